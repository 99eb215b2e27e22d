"""Shared text sets for the tokenizer parity tests (imported by test_tokenizers_*.py; no tests here).

`TEXTS`: fixed texts, each aimed at one rule. `random_texts(n, seed)`: seeded random mixtures of
scripts, whitespace runs, digits, punctuation, emoji, contractions and arbitrary code points, for
differential tests against a reference (same seed -> same texts, so a failure reproduces).
"""

import random

TEXTS = [
    "",
    "Hello, world!",
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.",
    "I'm sure they're here; we've seen it, you'll see, he'd know, she's IT'S",
    "def f(x, y=2):\n    return x ** y  # square\n\nprint(f(3))\t\t// end\r\n",
    "   leading spaces and   runs    of spaces   ",
    "\n\n\n\t\t\t  \n \r\n",
    "naïve café résumé Ünïcödé Ångström façade",
    "e\u0301 a\u0300\u0301 n\u0303o combining marks",
    "日本語のテキストと中文字符，한국어 텍스트",
    "emoji 🎉🚀👍🏽 👨‍👩‍👧 flags 🇫🇷",
    "x" * 300,
    "supercalifragilisticexpialidocious" * 5,
    "numbers 0 12 345 6789 3.14159 1,000,000 2024-01-01",
    "MiXeD CaSe WORDS and ALLCAPS",
    "punctuation!!! ??? ... --- ((( ))) [[]] {{}} <<>> @#$%^&*",
    "tab\tseparated\tvalues\nand\u00a0non-breaking\u2003spaces",
    "Zero\u200bwidth\u200cjoiners\u200d and \u0000 control \u0007 chars \u007f",
    "Ελληνικά кириллица עברית العربية हिन्दी ไทย",
    "<|endoftext|> is only special when asked",
    "🎉" * 20 + "a" * 50,
]

FRAGMENTS = [
    # words in several scripts and cases (upper, lower, title, mixed; o200k splits on case)
    "hello", " world", "The", " QUICK", "brown", "CamelCase", "iPhone", "ǅemal", " naïve", "Ärger",
    "straße", "日本語", "中文", "한국어", "кошка", " Ελλάδα", "עברית", "العربية", "हिन्दी", "ไทย",
    "e\u0301", "\u0301", "ﬁ", "Ⅻ", "ʰ", "x²",
    # contractions, in both cases and with curly quotes
    "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "n't", "’s", " don't", "I'M",
    # punctuation and symbols
    ".", ",", "!", "?", "...", "--", "/", "//", "\\", "'", '"', "(", ")", "[", "]", "{", "}", "<",
    ">", "#", "@", "$", "%", "^", "&", "*", "_", "=", "+", "~", "`", "|", ";", ":", "«", "»", "¿",
    "—", "…", "€", "©",
    # emoji: plain, with skin tone, ZWJ sequence, flag, keycap
    "🎉", "👍🏽", "👨‍👩‍👧", "🇫🇷", "1️⃣", "🚀🚀",
    # digits in other scripts, special-token look-alikes, invisible and control characters
    "٣٤٥", "१२", "½", "<|endoftext|>", "<|im_start|>", "\u200b", "\u200d", "\ufeff", "\x00",
    "\x07", "\x7f", "\ufffd",
]
WHITESPACE = [" ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u2003", "\u3000", "\x0b", "\x0c"]


def random_texts(n: int, seed: int = 0, max_parts: int = 20) -> list[str]:
    """`n` random texts, each up to `max_parts` parts: a fragment above (60%), a whitespace run
    (15%), a number of 1-9 digits (10%) or one arbitrary code point (15%; surrogates excluded)."""
    r = random.Random(seed)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(r.randint(0, max_parts)):
            k = r.random()
            if k < 0.60:
                parts.append(r.choice(FRAGMENTS))
            elif k < 0.75:
                parts.append("".join(r.choice(WHITESPACE) for _ in range(r.randint(1, 6))))
            elif k < 0.85:
                parts.append(str(r.randrange(10 ** r.randint(1, 9))))
            else:
                c = r.randrange(0x10000) if r.random() < 0.8 else r.randrange(0x10000, 0x110000)
                parts.append(chr(c) if not 0xD800 <= c < 0xE000 else "\ue000")
        out.append("".join(parts))
    return out
