#!/usr/bin/env python3
"""The OpenAI-compatible HTTP API (issue 15) through the official `openai` Python client.

Starts a real `hipserve serve --model=default --http_port=0` (SmolLM2-135M-Instruct on the CPU
backend) and checks: chat and completions, streaming (SSE) and not; stop strings; max_tokens;
seeds; usage against the gRPC API's token counts (`hipserve generate`); typed errors; a stream
closed early frees its KV; 32 concurrent streams equal the same requests run alone.

Usage: openai_api_test.py --hipserve build/bin/hipserve [unittest args]
The `openai` package is required (scripts/setup.sh installs it); without it the test fails.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

try:
    import openai
except ImportError:  # a missing client must fail the suite, not skip it
    sys.stderr.write(
        "FAIL: the `openai` Python package is missing; run scripts/setup.sh "
        "(or: python3 -m pip install openai)\n")
    sys.exit(1)

HIPSERVE = None  # path to the binary, from --hipserve
SERVER = None  # the running server (ServerProcess)
MODEL = "default"


class ServerProcess:
    """`hipserve serve` with both ports picked by the kernel."""

    def __init__(self, binary, model, extra=()):
        self.dir = tempfile.mkdtemp(prefix="hipserve-openai-")
        self.log_path = os.path.join(self.dir, "serve.log")
        port_file = os.path.join(self.dir, "grpc.port")
        http_file = os.path.join(self.dir, "http.port")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [binary, "serve", f"--model={model}", "--port=0", f"--port_file={port_file}",
             "--http_port=0", f"--http_port_file={http_file}", "--host=127.0.0.1",
             "--http_host=127.0.0.1", *extra],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 180
        while not (os.path.exists(port_file) and os.path.exists(http_file)):
            self._check_alive()
            if time.time() > deadline:
                raise RuntimeError("server did not write its port files:\n" + self.tail())
            time.sleep(0.05)
        self.grpc_port = int(open(port_file).read())
        self.http_port = int(open(http_file).read())
        self.base = f"http://127.0.0.1:{self.http_port}"
        while True:
            self._check_alive()
            status, _ = http_get(self.base + "/health/ready")
            if status == 200:
                break
            if time.time() > deadline:
                raise RuntimeError("server not ready:\n" + self.tail())
            time.sleep(0.1)

    def _check_alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"hipserve serve exited ({self.proc.returncode}):\n" + self.tail())

    def tail(self):
        self.log.flush()
        with open(self.log_path) as f:
            return "".join(f.readlines()[-30:])

    def client(self, **kw):
        return openai.OpenAI(base_url=self.base + "/v1", api_key="none", max_retries=0,
                             timeout=120, **kw)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
    except (urllib.error.URLError, ConnectionError):
        return None, None


def server_info():
    status, body = http_get(SERVER.base + "/hipserve/v1/server_info")
    assert status == 200, (status, body)
    return body


def grpc_generate(prompt, max_tokens, chat=False):
    """The gRPC API's answer: (text, prompt_tokens, completion_tokens), via `hipserve generate`."""
    cmd = [HIPSERVE, "generate", f"--server=127.0.0.1:{SERVER.grpc_port}", f"--prompt={prompt}",
           f"--max_tokens={max_tokens}", "--temperature=0"]
    if chat:
        cmd.append("--chat")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    m = re.search(r"prompt_tokens=(\d+) completion_tokens=(\d+)", r.stderr)
    assert m, r.stderr
    return r.stdout[:-1], int(m.group(1)), int(m.group(2))  # generate adds a newline


def chat_messages(text):
    return [{"role": "user", "content": text}]


class OpenAiApiTest(unittest.TestCase):
    def setUp(self):
        self.client = SERVER.client()

    # --- endpoints --------------------------------------------------------------------------

    def test_health_and_models(self):
        self.assertEqual(http_get(SERVER.base + "/health")[0], 200)
        self.assertEqual(http_get(SERVER.base + "/health/ready")[0], 200)
        ids = [m.id for m in self.client.models.list().data]
        self.assertIn(MODEL, ids)
        self.assertEqual(self.client.models.retrieve(MODEL).id, MODEL)

    def test_chat_non_streaming(self):
        r = self.client.chat.completions.create(
            model=MODEL, messages=chat_messages("What is the capital of France?"),
            max_tokens=24, temperature=0)
        self.assertTrue(r.id.startswith("chatcmpl-"))
        self.assertEqual(r.object, "chat.completion")
        self.assertEqual(len(r.choices), 1)
        self.assertEqual(r.choices[0].message.role, "assistant")
        self.assertIn("Paris", r.choices[0].message.content)
        self.assertIn(r.choices[0].finish_reason, ("stop", "length"))
        self.assertGreater(r.usage.prompt_tokens, 0)
        self.assertGreater(r.usage.completion_tokens, 0)
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens)

    def test_chat_streaming_equals_non_streaming(self):
        msgs = chat_messages("Name three colors.")
        once = self.client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=16,
                                                   temperature=0)
        stream = self.client.chat.completions.create(
            model=MODEL, messages=msgs, max_tokens=16, temperature=0, stream=True,
            stream_options={"include_usage": True})
        text, reasons, usage, chunks, roles = "", [], None, 0, []
        for chunk in stream:
            chunks += 1
            self.assertEqual(chunk.object, "chat.completion.chunk")
            if chunk.usage is not None:
                usage = chunk.usage
                self.assertEqual(chunk.choices, [])
                continue
            delta = chunk.choices[0].delta
            if delta.role:
                roles.append(delta.role)
            text += delta.content or ""
            if chunk.choices[0].finish_reason:
                reasons.append(chunk.choices[0].finish_reason)
        self.assertGreater(chunks, 3)  # streamed, not one blob
        self.assertEqual(roles, ["assistant"])
        self.assertEqual(text, once.choices[0].message.content)
        self.assertEqual(reasons, [once.choices[0].finish_reason])
        self.assertIsNotNone(usage, "stream_options.include_usage sends a usage chunk")
        self.assertEqual(usage.prompt_tokens, once.usage.prompt_tokens)
        self.assertEqual(usage.completion_tokens, once.usage.completion_tokens)

    def test_streaming_without_usage_has_no_usage_chunk(self):
        stream = self.client.completions.create(model=MODEL, prompt="One, two,", max_tokens=4,
                                                temperature=0, stream=True)
        chunks = list(stream)
        self.assertTrue(all(c.usage is None for c in chunks))
        self.assertTrue(all(len(c.choices) == 1 for c in chunks))

    def test_completions(self):
        prompt = "The quick brown fox"
        once = self.client.completions.create(model=MODEL, prompt=prompt, max_tokens=12,
                                              temperature=0)
        self.assertTrue(once.id.startswith("cmpl-"))
        self.assertEqual(once.object, "text_completion")
        self.assertGreater(len(once.choices[0].text), 0)
        stream = self.client.completions.create(model=MODEL, prompt=prompt, max_tokens=12,
                                                temperature=0, stream=True,
                                                stream_options={"include_usage": True})
        text, usage = "", None
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for c in chunk.choices:
                text += c.text
        self.assertEqual(text, once.choices[0].text)
        self.assertEqual(usage.completion_tokens, once.usage.completion_tokens)
        # A prompt of token ids is the same request.
        ids = self.client.completions.create(model=MODEL, prompt=[[1, 2, 3]], max_tokens=2,
                                             temperature=0)
        self.assertEqual(ids.usage.prompt_tokens, 3)

    def test_max_tokens(self):
        for field in ("max_tokens", "max_completion_tokens"):
            r = self.client.chat.completions.create(
                model=MODEL, messages=chat_messages("Tell me a long story."), temperature=0,
                extra_body={"ignore_eos": True}, **{field: 5})
            self.assertEqual(r.usage.completion_tokens, 5, field)
            self.assertEqual(r.choices[0].finish_reason, "length", field)
        r = self.client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=3,
                                           temperature=0, extra_body={"ignore_eos": True})
        self.assertEqual(r.usage.completion_tokens, 3)

    def test_stop_strings(self):
        prompt = "Once upon a time"
        full = self.client.completions.create(model=MODEL, prompt=prompt, max_tokens=24,
                                              temperature=0,
                                              extra_body={"ignore_eos": True}).choices[0].text
        words = full.split()
        self.assertGreater(len(words), 4, full)
        stop = words[3]  # a word a few tokens in
        expected = full[:full.index(stop)]
        for stream in (False, True):
            r = self.client.completions.create(model=MODEL, prompt=prompt, max_tokens=24,
                                               temperature=0, stop=[stop, "\u2603never"],
                                               stream=stream)
            if stream:
                text, reason = "", None
                for chunk in r:
                    text += chunk.choices[0].text
                    reason = chunk.choices[0].finish_reason or reason
            else:
                text, reason = r.choices[0].text, r.choices[0].finish_reason
            self.assertEqual(text, expected, f"stream={stream} stop={stop!r}")
            self.assertEqual(reason, "stop")
        r = self.client.chat.completions.create(model=MODEL, temperature=0, max_tokens=24,
                                                messages=chat_messages("Count from 1 to 9."),
                                                stop="5")
        self.assertNotIn("5", r.choices[0].message.content)

    def test_same_seed_same_text(self):
        def sample(seed):
            return self.client.completions.create(
                model=MODEL, prompt="My favourite animal is", max_tokens=16, temperature=1.0,
                top_p=0.95, seed=seed, extra_body={"top_k": 50, "ignore_eos": True}
            ).choices[0].text

        a, b = sample(1234), sample(1234)
        self.assertEqual(a, b)
        others = {sample(s) for s in (1, 2, 3)}
        self.assertGreater(len(others | {a}), 1, "different seeds should not all agree")

    def test_usage_equals_grpc_token_counts(self):
        for chat, prompt in ((False, "The history of Rome"), (True, "Why is the sky blue?")):
            text, prompt_tokens, completion_tokens = grpc_generate(prompt, 10, chat=chat)
            if chat:
                r = self.client.chat.completions.create(
                    model=MODEL, messages=chat_messages(prompt), max_tokens=10, temperature=0)
                http_text = r.choices[0].message.content
            else:
                r = self.client.completions.create(model=MODEL, prompt=prompt, max_tokens=10,
                                                   temperature=0)
                http_text = r.choices[0].text
            self.assertEqual(r.usage.prompt_tokens, prompt_tokens, f"chat={chat}")
            self.assertEqual(r.usage.completion_tokens, completion_tokens, f"chat={chat}")
            self.assertEqual(http_text, text, f"chat={chat}")

    # --- errors -----------------------------------------------------------------------------

    def assert_bad_request(self, param, fragment, **kw):
        kw.setdefault("model", MODEL)
        with self.assertRaises(openai.BadRequestError) as cm:
            if "prompt" in kw:
                self.client.completions.create(**kw)
            else:
                kw.setdefault("messages", chat_messages("hi"))
                self.client.chat.completions.create(**kw)
        e = cm.exception
        self.assertEqual(e.status_code, 400)
        self.assertEqual(e.body.get("param"), param, e.body)
        self.assertIn(fragment, e.message)
        self.assertEqual(e.type, "invalid_request_error")

    def test_bad_requests_name_the_field(self):
        self.assert_bad_request("max_tokens", "max_tokens must be > 0", max_tokens=0)
        self.assert_bad_request("max_completion_tokens", "max_completion_tokens must be > 0",
                                max_completion_tokens=-3)
        self.assert_bad_request("temperature", "temperature must be in", temperature=-1)
        self.assert_bad_request("top_p", "top_p must be in", top_p=1.5)
        self.assert_bad_request("n", "n must be 1", n=2)
        self.assert_bad_request("messages", "messages must not be empty", messages=[])
        self.assert_bad_request("messages[0].role", "must be system",
                                messages=[{"role": "wizard", "content": "x"}])
        self.assert_bad_request("prompt", "prompt is empty", prompt="")
        self.assert_bad_request("stop", "stop[0] is empty", prompt="x", stop=[""])
        self.assert_bad_request("max_tokens", "must be an integer", prompt="x",
                                extra_body={"max_tokens": "ten"})
        self.assert_bad_request("logprobs", "not supported", logprobs=True)
        self.assert_bad_request("messages", "maximum context", messages=chat_messages(
            "word " * 9000), max_tokens=1)

    def test_unknown_model_is_not_found(self):
        with self.assertRaises(openai.NotFoundError) as cm:
            self.client.chat.completions.create(model="gpt-4o", messages=chat_messages("hi"))
        self.assertIn("'gpt-4o' does not exist", cm.exception.message)
        self.assertIn("'default'", cm.exception.message)  # says what is served
        self.assertEqual(cm.exception.code, "model_not_found")
        with self.assertRaises(openai.NotFoundError):
            self.client.models.retrieve("gpt-4o")

    def test_no_authentication_configured(self):
        # Without --auth_tokens_file the API is open: any key, or none, is accepted.
        r = openai.OpenAI(base_url=SERVER.base + "/v1", api_key="anything", max_retries=0)
        self.assertEqual(r.completions.create(model=MODEL, prompt="Hi", max_tokens=1,
                                              temperature=0).usage.completion_tokens, 1)

    def test_bearer_tokens_give_authentication_errors(self):
        # A second server with --auth_tokens_file (builtin:tiny: only the check matters here).
        with tempfile.NamedTemporaryFile("w", suffix=".tokens", delete=False) as f:
            f.write("# test\nsk-good\n")
            path = f.name
        guarded = ServerProcess(HIPSERVE, "builtin:tiny", extra=[f"--auth_tokens_file={path}"])
        try:
            self.assertEqual(http_get(guarded.base + "/health/ready")[0], 200)  # stays open
            for key in ("sk-wrong", ""):
                bad = openai.OpenAI(base_url=guarded.base + "/v1", api_key=key or "x",
                                    max_retries=0, default_headers={} if key else
                                    {"Authorization": ""})
                with self.assertRaises(openai.AuthenticationError) as e:
                    bad.completions.create(model="builtin:tiny", prompt="Hi", max_tokens=1)
                self.assertEqual(e.exception.status_code, 401)
                self.assertIn("token", str(e.exception).lower())
            good = openai.OpenAI(base_url=guarded.base + "/v1", api_key="sk-good", max_retries=0)
            r = good.completions.create(model="builtin:tiny", prompt="Hi", max_tokens=2,
                                        temperature=0)
            self.assertEqual(r.usage.completion_tokens, 2)
            self.assertGreater(len(good.models.list().data), 0)
        finally:
            guarded.stop()
            os.unlink(path)

    # --- lifetime ---------------------------------------------------------------------------

    def test_closing_a_stream_frees_its_kv(self):
        self.wait_idle()
        stream = self.client.chat.completions.create(
            model=MODEL, messages=chat_messages("Write a very long essay."), max_tokens=4000,
            temperature=0, stream=True, extra_body={"ignore_eos": True})
        got = 0
        for chunk in stream:
            got += len(chunk.choices[0].delta.content or "")
            if got > 20:
                break
        info = server_info()
        self.assertEqual(info["active_requests"], 1, info)
        self.assertGreater(info["kv_tokens_in_use"], 0, info)
        stream.close()  # the client goes away with ~4000 tokens left to generate
        self.wait_idle(timeout=15)
        # The gRPC API's GetServerInfo agrees (`hipserve inspect`).
        r = subprocess.run([HIPSERVE, "inspect", f"--server=127.0.0.1:{SERVER.grpc_port}"],
                           capture_output=True, text=True, timeout=60)
        self.assertIn("0 active, 0 queued", r.stdout, r.stdout + r.stderr)

    def wait_idle(self, timeout=60):
        deadline = time.time() + timeout
        while True:
            info = server_info()
            if info["active_requests"] == 0 and info["queued_requests"] == 0 and \
                    info["kv_tokens_in_use"] == 0:
                return
            if time.time() > deadline:
                self.fail(f"server still busy after {timeout} s: {info}")
            time.sleep(0.05)

    def test_32_concurrent_streams_equal_alone(self):
        prompts = [f"Give me one fact about the number {i}." for i in range(32)]

        def run(prompt, out, i):
            try:
                stream = SERVER.client().chat.completions.create(
                    model=MODEL, messages=chat_messages(prompt), max_tokens=6, temperature=0,
                    stream=True, stream_options={"include_usage": True})
                text, usage = "", None
                for chunk in stream:
                    if chunk.usage is not None:
                        usage = chunk.usage
                    elif chunk.choices:
                        text += chunk.choices[0].delta.content or ""
                out[i] = (text, usage.completion_tokens)
            except Exception as e:  # reported below
                out[i] = e

        alone = [None] * len(prompts)
        for i, p in enumerate(prompts):
            run(p, alone, i)
        together = [None] * len(prompts)
        threads = [threading.Thread(target=run, args=(p, together, i))
                   for i, p in enumerate(prompts)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        for i in range(len(prompts)):
            self.assertNotIsInstance(alone[i], Exception, alone[i])
            self.assertNotIsInstance(together[i], Exception, together[i])
            self.assertEqual(together[i], alone[i], f"request {i}: {prompts[i]!r}")
        self.wait_idle()


def main():
    global HIPSERVE, SERVER, MODEL
    parser = argparse.ArgumentParser()
    parser.add_argument("--hipserve", required=True)
    parser.add_argument("--model", default="default")
    args, rest = parser.parse_known_args()
    HIPSERVE, MODEL = args.hipserve, args.model
    print(f"openai {openai.__version__}; starting {HIPSERVE} serve --model={MODEL}", flush=True)
    SERVER = ServerProcess(HIPSERVE, MODEL)
    try:
        prog = unittest.main(argv=[sys.argv[0], *rest], exit=False, verbosity=2)
    finally:
        SERVER.stop()
    if not prog.result.wasSuccessful():
        print("server log tail:\n" + SERVER.tail())
        sys.exit(1)


if __name__ == "__main__":
    main()
