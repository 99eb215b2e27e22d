"""Byte-level BPE files: read ``*.tiktoken``, GPT-2 ``encoder.json`` + ``vocab.bpe`` and HF
``tokenizer.json``; write HF ``tokenizer.json`` (+ ``tokenizer_config.json`` for roles and the chat
template, which HF keeps there). Every reader raises UserError naming the file when it is missing,
truncated or of another kind. Nothing is unpickled: these are text and JSON formats.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

import regex

from ..errors import UserError
from .bpe import _SPELL, GPT2_PATTERN, spell

# tiktoken's published patterns and special tokens, keyed by encoding name (facts, not code).
CL100K_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
O200K_PATTERN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
TIKTOKEN_KINDS = {
    "cl100k": (CL100K_PATTERN, {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258,
                                "<|fim_middle|>": 100259, "<|fim_suffix|>": 100260,
                                "<|endofprompt|>": 100276}),
    "o200k": (O200K_PATTERN, {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}),
}
GPT2_KIND = (GPT2_PATTERN, {"<|endoftext|>": 50256})
BOS_NAMES = ("<|begin_of_text|>", "<s>", "<bos>", "<|endoftext|>", "<|im_start|>")
EOS_NAMES = ("<|end_of_text|>", "</s>", "<eos>", "<|endoftext|>", "<|im_end|>")


def guess_roles(specials):
    roles = {}
    for role, names in (("bos", BOS_NAMES), ("eos", EOS_NAMES)):
        roles[role] = next((n for n in names if n in specials), None)
    for role, names in (("pad", ("<pad>", "<|pad|>", "[PAD]")), ("unk", ("<unk>", "[UNK]"))):
        roles[role] = next((n for n in names if n in specials), None)
    return {k: v for k, v in roles.items() if v}


def from_tiktoken(cls, path):
    """``*.tiktoken``: one ``base64(token bytes) rank`` per line; rank = id; no merge list."""
    p = Path(path)
    try:
        lines = p.read_bytes().splitlines()
    except OSError as e:
        raise UserError(f"{p}: cannot read ({e.strerror})") from None
    vocab = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            tok, rank = base64.b64decode(parts[0], validate=True), int(parts[1])
            if len(parts) != 2:
                raise ValueError
        except (ValueError, IndexError, binascii.Error):
            raise UserError(f"{p}:{n}: not a tiktoken file (expected 'base64-token rank')") from None
        vocab[tok.decode("latin-1").translate(_SPELL)] = rank
    if len(vocab) < 256 or sorted(vocab.values()) != list(range(len(vocab))):
        raise UserError(f"{p}: truncated or damaged tiktoken file ({len(vocab)} tokens, ranks not 0..n-1)")
    name = p.name.lower()
    pattern, specials = next((v for k, v in TIKTOKEN_KINDS.items() if k in name), GPT2_KIND)
    specials = {t: i for t, i in specials.items() if i >= len(vocab)}
    return cls(vocab, None, [pattern], specials, guess_roles(specials))


def from_encoder_json(cls, encoder_path, merges_path):
    """GPT-2's release files: ``encoder.json`` (token -> id) and ``vocab.bpe`` (merges, in order)."""
    ep, mp = Path(encoder_path), Path(merges_path)
    for f in (ep, mp):
        if not f.is_file():
            raise UserError(f"GPT-2 tokenizer needs {ep.name} and {mp.name} side by side: {f} not found")
    try:
        vocab = json.loads(ep.read_text(encoding="utf-8"))
        if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
            raise ValueError("expected a JSON object token -> id")
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{ep}: not a GPT-2 encoder.json ({e})") from None
    merges = read_merges_txt(mp)
    specials = {t: vocab[t] for t in ("<|endoftext|>",) if t in vocab}
    return cls(vocab, merges, [GPT2_PATTERN], specials, guess_roles(specials))


def read_merges_txt(mp):
    try:
        lines = mp.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"{mp}: not a merges file (not UTF-8 text)") from None
    merges = []
    for n, line in enumerate(lines, 1):
        if line.startswith("#version") or not line.strip():
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise UserError(f"{mp}:{n}: not a BPE merges line (expected 'a b'): {line[:40]!r}")
        merges.append(tuple(parts))
    return merges


# ---- Hugging Face tokenizer.json ---------------------------------------------------------------
def _parse_pre_tokenizer(pt, source):
    items = pt.get("pretokenizers", []) if pt and pt.get("type") == "Sequence" else [pt]
    patterns, prefix, byte_level = [], False, False
    for it in items:
        kind = (it or {}).get("type")
        if kind == "ByteLevel":
            byte_level, prefix = True, bool(it.get("add_prefix_space", False))
            if it.get("use_regex", True):
                patterns.append(GPT2_PATTERN)
        elif kind == "Split" and it.get("behavior") == "Isolated" and not it.get("invert"):
            pat = it["pattern"]
            patterns.append(pat["Regex"] if "Regex" in pat else regex.escape(pat["String"]))
        elif kind == "Digits":
            patterns.append(r"\p{N}" if it.get("individual_digits") else r"\p{N}+")
        else:
            raise UserError(f"{source}: pre-tokenizer {kind!r} is not supported for byte-level BPE")
    if not byte_level:
        raise UserError(f"{source}: a BPE tokenizer.json without a ByteLevel pre-tokenizer "
                        "(only byte-level BPE is supported)")
    return patterns or [r"(?s).+"], prefix


def from_hf_dict(cls, d, source="tokenizer.json"):
    m = d["model"]
    if d.get("normalizer") is not None:
        raise UserError(f"{source}: BPE with a normalizer ({d['normalizer'].get('type')}) is not supported")
    if m.get("continuing_subword_prefix") or m.get("end_of_word_suffix"):
        raise UserError(f"{source}: BPE with subword prefix/suffix is not byte-level (not supported)")
    try:
        vocab = m["vocab"]
        merges = [tuple(x.split(" ")) if isinstance(x, str) else tuple(x) for x in m["merges"]]
    except (KeyError, TypeError, AttributeError):
        raise UserError(f"{source}: BPE model without vocab/merges (truncated?)") from None
    patterns, prefix = _parse_pre_tokenizer(d.get("pre_tokenizer"), source)
    specials = {a["content"]: a["id"] for a in d.get("added_tokens") or []}
    roles, add_bos, add_eos = guess_roles(specials), False, False
    post = d.get("post_processor") or {}
    posts = post.get("processors", []) if post.get("type") == "Sequence" else [post]
    for pp in posts:
        if pp.get("type") == "TemplateProcessing":
            single = pp.get("single") or []
            if single and "SpecialToken" in single[0]:
                add_bos, roles["bos"] = True, single[0]["SpecialToken"]["id"]
            if len(single) > 1 and "SpecialToken" in single[-1]:
                add_eos, roles["eos"] = True, single[-1]["SpecialToken"]["id"]
    chat_template = None
    cfg_path = Path(source).with_name("tokenizer_config.json")
    if cfg_path.is_file():
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise UserError(f"{cfg_path}: unreadable ({e})") from None
        for role in ("bos", "eos", "pad", "unk"):
            tok = cfg.get(f"{role}_token")
            tok = tok.get("content") if isinstance(tok, dict) else tok
            if isinstance(tok, str) and (tok in specials or tok in vocab):
                roles[role] = tok
        add_bos = cfg.get("add_bos_token", add_bos)
        add_eos = cfg.get("add_eos_token", add_eos)
        chat_template = cfg.get("chat_template")
    return cls(vocab, merges, patterns, specials, roles, add_prefix_space=prefix,
               ignore_merges=bool(m.get("ignore_merges")), add_bos=bool(add_bos),
               add_eos=bool(add_eos), chat_template=chat_template)


def recover_merges(tok):
    """tiktoken files store no merges: token t of rank r came from the two parts that BPE with
    ranks < r leaves of t. Rebuilt here only for export."""
    if tok.merges is not None:
        return tok.merges
    vocab, out = tok.vocab, []
    for t, r in sorted(vocab.items(), key=lambda kv: kv[1]):
        if len(t) < 2 or t in tok.special_tokens:
            continue
        parts = list(t)
        while len(parts) > 2:
            cands = [(vocab.get(parts[i] + parts[i + 1]), i) for i in range(len(parts) - 1)]
            cands = [(rr, i) for rr, i in cands if rr is not None and rr < r]
            if not cands:
                break
            _, i = min(cands)
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        if len(parts) == 2:
            out.append((parts[0], parts[1]))
    return out


def to_hf_dict(tok):
    """Our BPE -> the HF ``tokenizer.json`` object (ByteLevel pre-tokenizer and decoder)."""
    pats = list(tok.patterns)
    use_regex = bool(pats) and pats[-1] == GPT2_PATTERN
    splits = [{"type": "Split", "pattern": {"Regex": p}, "behavior": "Isolated", "invert": False}
              for p in (pats[:-1] if use_regex else pats)]
    byte_level = {"type": "ByteLevel", "add_prefix_space": tok.add_prefix_space,
                  "trim_offsets": True, "use_regex": use_regex}
    pre = {"type": "Sequence", "pretokenizers": splits + [byte_level]} if splits else byte_level
    post = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
    bos, eos = tok.bos_token, tok.eos_token
    if (tok.add_bos and bos) or (tok.add_eos and eos):
        pre_s = [{"SpecialToken": {"id": bos, "type_id": 0}}] if tok.add_bos and bos else []
        post_s = [{"SpecialToken": {"id": eos, "type_id": 0}}] if tok.add_eos and eos else []
        seq = [{"Sequence": {"id": "A", "type_id": 0}}]
        used = {t for t in (bos if tok.add_bos else None, eos if tok.add_eos else None) if t}
        post = {"type": "TemplateProcessing", "single": pre_s + seq + post_s,
                "pair": pre_s + seq + [{"Sequence": {"id": "B", "type_id": 1}}] + post_s,
                "special_tokens": {t: {"id": t, "ids": [tok.token_to_id(t)], "tokens": [t]} for t in used}}
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for t, i in sorted(tok.special_tokens.items(), key=lambda x: x[1])]
    vocab = dict(tok.vocab)
    for t, i in tok.special_tokens.items():
        vocab.setdefault(t, i)
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": None, "pre_tokenizer": pre, "post_processor": post,
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                        "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None,
                      "continuing_subword_prefix": None, "end_of_word_suffix": None,
                      "fuse_unk": False, "byte_fallback": False, "ignore_merges": tok.ignore_merges,
                      "vocab": vocab, "merges": [f"{a} {b}" for a, b in recover_merges(tok)]}}


def hf_config(tok):
    """``tokenizer_config.json``: the roles, BOS/EOS flags and chat template HF keeps there."""
    cfg = {f"{r}_token": t for r, t in tok.roles.items()}
    cfg.update({"add_bos_token": bool(tok.add_bos), "add_eos_token": bool(tok.add_eos)})
    if getattr(tok, "chat_template", None):
        cfg["chat_template"] = tok.chat_template
    return cfg


__all__ = ["from_tiktoken", "from_encoder_json", "from_hf_dict", "to_hf_dict", "hf_config",
           "recover_merges", "spell"]
