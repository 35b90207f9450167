#include "coordinator/tokenizer/utf8.h"

#include "coordinator/tokenizer/tokenizer.h"

namespace hipserve::coordinator {

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

namespace {

// Number of bytes the lead byte announces and the allowed range of the second byte
// (Unicode Table 3-7); 0 bytes = not a lead byte.
struct Lead {
  int len;
  uint8_t lo, hi;
};

Lead ClassifyLead(uint8_t b) {
  if (b < 0x80) {
    return {1, 0, 0};
  }
  if (b >= 0xC2 && b <= 0xDF) {
    return {2, 0x80, 0xBF};
  }
  if (b == 0xE0) {
    return {3, 0xA0, 0xBF};
  }
  if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
    return {3, 0x80, 0xBF};
  }
  if (b == 0xED) {
    return {3, 0x80, 0x9F};
  }
  if (b == 0xF0) {
    return {4, 0x90, 0xBF};
  }
  if (b >= 0xF1 && b <= 0xF3) {
    return {4, 0x80, 0xBF};
  }
  if (b == 0xF4) {
    return {4, 0x80, 0x8F};
  }
  return {0, 0, 0};
}

// Number of leading bytes of `s` that are a valid prefix of a sequence (at most lead.len).
int ValidPrefix(absl::string_view s, const Lead& lead) {
  int n = 1;
  for (; n < lead.len && n < static_cast<int>(s.size()); ++n) {
    uint8_t c = static_cast<uint8_t>(s[n]);
    uint8_t lo = n == 1 ? lead.lo : 0x80;
    uint8_t hi = n == 1 ? lead.hi : 0xBF;
    if (c < lo || c > hi) {
      break;
    }
  }
  return n;
}

}  // namespace

int Utf8SequenceLength(absl::string_view s) {
  if (s.empty()) {
    return 0;
  }
  Lead lead = ClassifyLead(static_cast<uint8_t>(s[0]));
  if (lead.len == 0) {
    return 0;
  }
  if (lead.len == 1) {
    return 1;
  }
  int n = ValidPrefix(s, lead);
  if (n == lead.len) {
    return n;
  }
  if (n == static_cast<int>(s.size())) {
    return -n;  // ran out of input: may still complete
  }
  return 0;
}

size_t Utf8MaximalSubpart(absl::string_view s) {
  if (s.empty()) {
    return 0;
  }
  Lead lead = ClassifyLead(static_cast<uint8_t>(s[0]));
  if (lead.len <= 1) {
    return 1;
  }
  return static_cast<size_t>(ValidPrefix(s, lead));
}

size_t AppendValidUtf8(absl::string_view in, std::string* out) {
  static constexpr absl::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
  size_t i = 0;
  while (i < in.size()) {
    int len = Utf8SequenceLength(in.substr(i));
    if (len > 0) {
      out->append(in.data() + i, len);
      i += len;
    } else if (len < 0) {
      return in.size() - i;  // an incomplete sequence: all of the rest
    } else {
      out->append(kReplacement.data(), kReplacement.size());
      i += Utf8MaximalSubpart(in.substr(i));
    }
  }
  return 0;
}

bool IsValidUtf8(absl::string_view s) {
  for (size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    int len = Utf8SequenceLength(s.substr(i));
    if (len <= 0) {
      return false;
    }
    i += len;
  }
  return true;
}

std::string SanitizeUtf8(absl::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  if (AppendValidUtf8(bytes, &out) > 0) {
    out.append("\xEF\xBF\xBD");
  }
  return out;
}

uint32_t ByteToUnicode(uint8_t b) {
  static const auto* table = [] {
    auto* t = new uint32_t[256];
    int n = 0;
    for (int i = 0; i < 256; ++i) {
      bool printable = (i >= '!' && i <= '~') || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE);
      t[i] = printable ? static_cast<uint32_t>(i) : static_cast<uint32_t>(256 + n++);
    }
    return t;
  }();
  return table[b];
}

int UnicodeToByte(uint32_t cp) {
  static const auto* table = [] {
    auto* t = new int[512];
    for (int i = 0; i < 512; ++i) {
      t[i] = -1;
    }
    for (int b = 0; b < 256; ++b) {
      t[ByteToUnicode(static_cast<uint8_t>(b))] = b;
    }
    return t;
  }();
  return cp < 512 ? table[cp] : -1;
}

uint32_t DecodeUtf8(absl::string_view s, int len) {
  auto b = [&](int i) { return static_cast<uint32_t>(static_cast<uint8_t>(s[i])); };
  switch (len) {
    case 1:
      return b(0);
    case 2:
      return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
    case 3:
      return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    default:
      return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  }
}

}  // namespace hipserve::coordinator
