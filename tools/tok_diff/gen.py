"""Random test strings for tools/tok_diff.sh: short mixes of scripts, digits, punctuation,
whitespace runs, contractions, combining marks, emoji, special-token text. Writes a JSON list.
usage: gen.py SEED COUNT > items.json"""
import json
import random
import sys

POOLS = [
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " ", "  ", "    ",
    "\n", "\n\n", "\t", "\t\t", "\r\n", " \n ", "\u000b", "\u000c", "\u00a0", "\u2028", "\u3000",
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S",
    "'LL", "'Re", "don't", "I'M", "we've", "éèêëàâäôöûüçñÉÀÇßøåæœ", "\u0301\u0308\u0327",
    "中文字符测试我想在工作天", "한국어텍스트", "日本語のテキストです", "Привет мир", "مرحبا بالعالم",
    "नमस्ते दुनिया", "สวัสดีชาวโลก", "កាន់តែពិសេសអាច", "😀😁🚀🦙✅❤️👍🏽", "\u200d", "🧑\u200d🌾",
    "½¾²³", "٣٤٥", "Ⅻ", "…—–“”‘’«»", "€£¥₹©®™°±×÷", "ſ", "K", "İı", "▁", "Ġ",
    "<s>", "</s>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|eot_id|>",
    "<|start_header_id|>", "<|begin_of_text|>", "<think>", "<tool_call>", "<|eot_id",
    "hello", "world", "The", "3.14159", "1,000,000", "2024-01-01",
    "def foo(x):\n    return x + 1\n", "int main(void) { return 0; }", "<html><body>",
    "http://example.com/a?b=c",
]
# U+0085 is left out on purpose: JavaScript's \s lacks it, Hugging Face's Rust regex (and
# Kiln, and llama.cpp) count it as whitespace, so transformers.js is not a reference there.

seed, count = int(sys.argv[1]), int(sys.argv[2])
r = random.Random(seed)
items = []
for _ in range(count):
    s = "".join(r.choice(POOLS) for _ in range(r.randint(1, 12)))
    if r.random() < 0.15:
        s = s.upper()
    items.append(s)
json.dump(items, sys.stdout)
