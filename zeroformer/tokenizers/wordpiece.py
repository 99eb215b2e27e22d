"""WordPiece (BERT family): BERT's basic tokenization, then greedy longest-match-first.

Encoding a text, exactly as BERT's fast tokenizer (HF ``BertNormalizer`` + ``BertPreTokenizer``
+ ``WordPiece``) does it:

1. clean: drop NUL, U+FFFD and control characters (Unicode category C*, except \\t \\n \\r);
   turn every whitespace character into a space;
2. put spaces around every CJK ideograph, so each one is a word of its own;
3. uncased vocabularies: strip accents (NFD, drop non-spacing marks Mn), then lower-case;
4. split on whitespace, and make every punctuation character (Unicode P*, or ASCII punctuation
   such as $ + < = > ^ ` | ~) a word of its own;
5. each word: if longer than 100 characters -> [UNK]; else repeatedly take the longest prefix in
   the vocabulary (pieces after the first are looked up with the "##" continuation prefix);
   if some position has no match the whole word becomes [UNK].

With special tokens: ``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]`` with token type ids 0...0 1...1.

Decoding is HF's ``WordPiece`` decoder (what ``BertTokenizerFast.decode`` runs): every token after
the first gets a space before it unless it starts with "##" (then the prefix is dropped); with
``cleanup`` (BERT's tokenizer.json declares it) each token then has " ." " ?" " !" " ," -> "." "?"
"!" "," (and " 's" " 've" " 're" " 'm" " n't" " ' " likewise), so "hello , world !" reads
"hello, world!"; "don ' t" stays (the apostrophe is a token of its own).
Known difference: character classes come from Python's `unicodedata` (Unicode 14 on Python 3.11);
HF's Rust tables are an older Unicode version, so characters assigned since then (e.g. the format
controls U+13430.., or new punctuation) can be classed differently. Unassigned characters (Cn) are
kept, as HF keeps them (its "control" test is Cc/Cf/Co/Cs).
Training (freq(ab) / (freq(a) freq(b)) merges) lives in wordpiece_train.py.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

from ..errors import UserError
from .base import Tokenizer, check_vocab

CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
# Rust's char::is_whitespace (Unicode White_Space), which the fast tokenizer uses.
WHITESPACE = set("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | \
    {chr(c) for c in range(0x2000, 0x200B)}
ASCII_PUNCT = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
# HF's WordPiece decoder clean-up, applied to each token (with its leading space) in this order.
CLEANUP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
           (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


def _is_cjk(c):
    o = ord(c)
    return any(a <= o <= b for a, b in CJK_RANGES)


def _char_class(c):
    """' ' whitespace, 'x' removed (NUL, U+FFFD, Cc/Cf/Co/Cs), 'p' punctuation/CJK (its own word), '' ordinary."""
    if c in ASCII_PUNCT:
        return "p"
    if c in WHITESPACE:
        return " " if c not in "\x0b\x0c\x85" else "x"
    cat = unicodedata.category(c)
    if c == "\x00" or c == "\ufffd" or (cat[0] == "C" and cat != "Cn"):
        return "x"
    if cat[0] == "P" or _is_cjk(c):
        return "p"
    return ""


class WordPieceTokenizer(Tokenizer):
    """`vocab`: token -> id (continuations spelled "##piece"); `lowercase` = uncased BERT."""

    type = "wordpiece"

    def __init__(self, vocab, unk_token="[UNK]", lowercase=True, strip_accents=None,
                 prefix="##", max_chars=100, special_tokens=None, roles=None, cleanup=True):
        self.vocab = dict(vocab)
        check_vocab(self.vocab)
        if not (isinstance(prefix, str) and isinstance(unk_token, str) and type(max_chars) is int):
            raise ValueError("WordPiece prefix / unk_token / max_input_chars_per_word of the "
                             "wrong type")
        if unk_token not in self.vocab:
            raise ValueError(f"the unknown token {unk_token!r:.40} is not in the vocabulary")
        self.cleanup = cleanup
        self.id_to_tok = {i: t for t, i in self.vocab.items()}
        self.lowercase = lowercase
        self.strip_accents = lowercase if strip_accents is None else strip_accents
        self.prefix, self.max_chars, self.unk = prefix, max_chars, unk_token
        if specials := special_tokens:
            specials = dict(specials)
        else:
            specials = {t: self.vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
                        if t in self.vocab}
        if roles is None:
            names = {"[PAD]": "pad", "[UNK]": "unk", "[CLS]": "cls", "[SEP]": "sep", "[MASK]": "mask"}
            roles = {names[t]: t for t in specials if t in names}
        self._cache: dict[str, list[int]] = {}
        self._class_cache: dict[str, str] = {}
        super().__init__(specials, roles)

    # ---- BERT basic tokenization -----------------------------------------------------------
    def normalize(self, text: str) -> str:
        """Steps 1-3: clean, isolate CJK, strip accents, lower-case."""
        cls_cache, out = self._class_cache, []
        for c in text:
            k = cls_cache.get(c)
            if k is None:
                k = cls_cache[c] = _char_class(c)
            if k == "":
                out.append(c)
            elif k == " ":
                out.append(" ")
            elif k == "p":
                out.append(f" {c} " if _is_cjk(c) else c)
        text = "".join(out)
        if self.strip_accents:
            text = "".join(c for c in unicodedata.normalize("NFD", text)
                           if unicodedata.category(c) != "Mn")
        if self.lowercase:
            text = "".join(c.lower() for c in text) if "Σ" in text or "İ" in text else text.lower()
        return text

    def pre_tokenize(self, text: str) -> list[str]:
        """Step 4: whitespace split, then every punctuation character alone."""
        cls_cache, words = self._class_cache, []
        for chunk in text.split():
            start = 0
            for i, c in enumerate(chunk):
                k = cls_cache.get(c)
                if k is None:
                    k = cls_cache[c] = _char_class(c)
                if k == "p":
                    if i > start:
                        words.append(chunk[start:i])
                    words.append(c)
                    start = i + 1
            if start < len(chunk):
                words.append(chunk[start:])
        return words

    def _word_ids(self, word: str, trace: list | None = None) -> list[int]:
        """Step 5: greedy longest-match-first; any gap -> the whole word is [UNK].
        `trace`: a list that receives (start, piece or None when nothing matched, candidates
        tried) per step (the step-by-step view of `zeroformer viz tokenizer`)."""
        vocab, unk = self.vocab, self.vocab.get(self.unk)
        if len(word) > self.max_chars:
            return [unk]
        out, start, n = [], 0, len(word)
        while start < n:
            end = n
            while end > start:
                piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                if piece in vocab:
                    out.append(vocab[piece])
                    break
                end -= 1
            if trace is not None:
                trace.append((start, piece, n - end + 1) if end > start
                             else (start, None, n - start))
            if end == start:
                return [unk]
            start = end
        return out

    def _encode_chunk(self, text: str) -> list[int]:
        cache, out = self._cache, []
        if len(cache) > 200_000:
            cache.clear()
        for w in self.pre_tokenize(self.normalize(text)):
            ids = cache.get(w)
            if ids is None:
                ids = cache[w] = self._word_ids(w)
            out += ids
        return out

    def wrap(self, ids, pair_ids=None):
        cls, sep = self.cls_token_id, self.sep_token_id
        a = [cls, *ids, sep]
        if pair_ids is None:
            return a, [0] * len(a)
        b = [*pair_ids, sep]
        return a + b, [0] * len(a) + [1] * len(b)

    def encode_pair(self, a: str, b: str):
        """-> (input_ids, token_type_ids) for ``[CLS] a [SEP] b [SEP]``."""
        return self.wrap(self._encode_with_special(a), self._encode_with_special(b))

    # ---- decoding and vocabulary -----------------------------------------------------------
    def decode(self, ids, skip_special_tokens=False):
        """Ids -> text by HF's WordPiece decoder (module docstring); special tokens are tokens
        like any other here (``[CLS] hello [SEP]``) unless skipped."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        ids = [int(i) for i in ids]
        if skip_special_tokens:
            ids = [i for i in ids if i not in self._special_by_id]
        return self._decode_ids(ids)

    def _decode_ids(self, ids) -> str:
        out = []
        for i in ids:
            t = self._special_by_id.get(i, self.id_to_tok.get(i))
            if t is None:
                raise UserError(f"token id {i} is outside the vocabulary (size {self.vocab_size})")
            if out:
                t = t[len(self.prefix):] if t.startswith(self.prefix) else " " + t
            if self.cleanup:
                for a, b in CLEANUP:
                    t = t.replace(a, b)
            out.append(t)
        return "".join(out)

    def id_to_token(self, i):
        return self.id_to_tok[i]

    def token_to_id(self, token):
        return self.vocab.get(token)

    @property
    def vocab_size(self):
        return max(self.id_to_tok, default=-1) + 1

    # ---- files -----------------------------------------------------------------------------
    @classmethod
    def from_vocab_txt(cls, path, lowercase=None):
        """``vocab.txt``: one token per line, id = line number. Casing from a sibling
        ``tokenizer_config.json`` (do_lower_case) if present, else uncased."""
        p = Path(path)
        try:
            lines = p.read_text(encoding="utf-8").split("\n")
        except UnicodeDecodeError:
            raise UserError(f"{p}: not a WordPiece vocab.txt (not UTF-8 text)") from None
        if lines and lines[-1] == "":
            lines.pop()
        vocab = {}
        for i, t in enumerate(lines):
            vocab.setdefault(t.rstrip("\r"), i)
        if "[UNK]" not in vocab:
            raise UserError(f"{p}: not a WordPiece vocab.txt (no [UNK] token among {len(vocab)} lines)")
        if lowercase is None:
            lowercase = True
            cfg = p.with_name("tokenizer_config.json")
            if cfg.is_file():
                import json

                try:
                    lowercase = bool(json.loads(cfg.read_text(encoding="utf-8")).get("do_lower_case", True))
                except ValueError:
                    raise UserError(f"{cfg}: unreadable JSON") from None
        return cls(vocab, lowercase=lowercase)

    @classmethod
    def from_hf_dict(cls, d, source="tokenizer.json"):
        m, norm = d["model"], d.get("normalizer") or {}
        if norm and norm.get("type") != "BertNormalizer":
            raise UserError(f"{source}: WordPiece with normalizer {norm.get('type')!r} is not supported")
        if not isinstance(m.get("vocab"), dict):
            raise UserError(f"{source}: WordPiece model without a vocab (truncated?)")
        lower = norm.get("lowercase", True) if norm else False
        dec = d.get("decoder") or {}
        specials = {a["content"]: a["id"] for a in d.get("added_tokens") or [] if a.get("special")}
        return cls(m["vocab"], unk_token=m.get("unk_token", "[UNK]"), lowercase=lower,
                   strip_accents=norm.get("strip_accents") if norm else False,
                   prefix=m.get("continuing_subword_prefix", "##"),
                   max_chars=m.get("max_input_chars_per_word", 100), special_tokens=specials or None,
                   cleanup=bool(dec.get("cleanup", True)) if dec.get("type") == "WordPiece" else False)

    def to_dict(self):
        """The HF ``tokenizer.json`` layout (BertNormalizer, BertPreTokenizer, WordPiece)."""
        cls_t, sep_t = self.role_token("cls"), self.role_token("sep")
        post = None
        if cls_t and sep_t:
            cid, sid = self.token_to_id(cls_t), self.token_to_id(sep_t)
            post = {"type": "BertProcessing", "sep": [sep_t, sid], "cls": [cls_t, cid]}
        added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                  "normalized": False, "special": True}
                 for t, i in sorted(self.special_tokens.items(), key=lambda x: x[1])]
        return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
                "normalizer": {"type": "BertNormalizer", "clean_text": True,
                               "handle_chinese_chars": True, "strip_accents": self.strip_accents,
                               "lowercase": self.lowercase},
                "pre_tokenizer": {"type": "BertPreTokenizer"}, "post_processor": post,
                "decoder": {"type": "WordPiece", "prefix": self.prefix, "cleanup": self.cleanup},
                "model": {"type": "WordPiece", "unk_token": self.unk,
                          "continuing_subword_prefix": self.prefix,
                          "max_input_chars_per_word": self.max_chars, "vocab": self.vocab}}

    @classmethod
    def train(cls, text, vocab_size, special_tokens=("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"),
              lowercase=True, progress=False):
        """Learn a vocabulary by merging the pair with the best freq(ab) / (freq(a) freq(b))."""
        from .wordpiece_train import train_wordpiece

        return train_wordpiece(cls, text, vocab_size, special_tokens, lowercase, progress)
