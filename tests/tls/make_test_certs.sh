#!/usr/bin/env bash
# Writes a throwaway PKI for the TLS tests into DIR (made if missing), with the openssl CLI:
#   ca.pem / ca.key            test CA
#   server.pem / server.key    signed by ca; SAN localhost, 127.0.0.1, ::1 (server and client use)
#   client.pem / client.key    signed by ca; a client / worker-side certificate
#   other_ca.pem               a second, unrelated CA
#   other.pem / other.key      signed by other_ca; SAN localhost, 127.0.0.1 (a stranger)
# Keys are EC P-256 (fast to make); certificates are valid for one day. Never use them for
# anything but tests.
set -euo pipefail
dir=${1:?usage: make_test_certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
command -v openssl >/dev/null || { echo "make_test_certs.sh: openssl not found (apt-get install openssl)" >&2; exit 1; }

key() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; }
ca() {  # name cn
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -sha256 -days 1 -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$1.pem" 2>/dev/null
}
leaf() {  # name cn ca
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr" 2>/dev/null
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
    > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -days 1 -sha256 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
ca ca "hipserve test CA"
leaf server "hipserve test server" ca
leaf client "hipserve test client" ca
ca other_ca "some other CA"
leaf other "stranger" other_ca
