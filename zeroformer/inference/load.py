"""Load a model for a job: a language model, a translator, an encoder or a classifier.

Each loader returns ``(model, tokenizer)`` with the model in eval mode, or raises UserError
naming the path when the model is not of the kind the job needs or carries no tokenizer. The
model is on the path plan.py's `choose_path` picks from the stored weights and the flags
(`dtype`, `int8`, `int4`); `report`, when given, is called with the one line describing it.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError


class _Loaded:
    """The model loaded as stored (plan.dtype), checked by the caller, then put on its path."""

    def __init__(self, path, dtype=None, int8=False, int4=False, report=None):
        from ..io.loading import load_with_source
        from .plan import choose_path, parse_flags

        parse_flags(dtype, int8, int4)   # a bad flag is refused before the weights are read
        self.model, source = load_with_source(path, dtype=None)
        self.plan = choose_path(source, dtype, int8, int4)
        self.report = report

    def finish(self):
        from .plan import apply_plan

        if self.plan.dtype is not None:
            from ..io.files import parse_dtype

            self.model.to(parse_dtype(self.plan.dtype))
        apply_plan(self.model, self.plan)
        if self.report is not None:
            self.report(self.plan.describe(lm_head=hasattr(self.model, "lm_head")))
        return self.model


def load_lm(path, tokenizer=None, dtype=None, int8: bool = False, int4: bool = False,
            report=None):
    """A decoder-only model and its tokenizer (`tokenizer`: a path overriding the model's own),
    on the path plan.py chooses (int8 / int4: weight-only quantized linears, nn/fast.py)."""
    from .. import load_tokenizer

    loaded = _Loaded(path, dtype, int8, int4, report)
    model = loaded.model
    if getattr(model.config, "arch", None) != "decoder":
        raise UserError(f"{path}: not a decoder-only language model (arch={model.config.arch})")
    tok = load_tokenizer(tokenizer) if tokenizer else model.tokenizer
    if tok is None:
        raise UserError(f"{path}: the model has no tokenizer; pass --tokenizer PATH")
    return loaded.finish(), tok


def load_translator(path, dtype=None, int8: bool = False, int4: bool = False, report=None):
    """An encoder-decoder and its tokenizer, on the path plan.py chooses."""
    loaded = _Loaded(path, dtype, int8, int4, report)
    model = loaded.model
    arch = getattr(model.config, "arch", None)
    if arch != "encoder_decoder":
        raise UserError(f"{path}: not a translator (an encoder-decoder model); this model is "
                        f"arch={arch!r}. Use `zeroformer generate` for language models")
    tok = model.tokenizer
    if tok is None:
        raise UserError(f"{path}: the model has no tokenizer (tokenizer.json, or an opus-mt "
                        "folder's source.spm + target.spm + vocab.json); train one with "
                        "`zeroformer train translate-es-en`")
    return loaded.finish(), tok


def load_encoder(path, classifier: bool = False, dtype=None, int8: bool = False,
                 int4: bool = False, report=None):
    """A BERT model (any heads; with `classifier`, one with a classification head) and its
    tokenizer (the model's own, else the one in `path`), on the path plan.py chooses."""
    from .. import load_tokenizer

    loaded = _Loaded(path, dtype, int8, int4, report)
    model = loaded.model
    if classifier:
        if model.config.arch != "encoder" or getattr(model, "classifier", None) is None:
            raise UserError(f"{path}: not a BERT sequence classifier (no classification head)")
    elif getattr(model.config, "arch", None) != "encoder":
        raise UserError(f"{path}: not a BERT (encoder) model (arch={model.config.arch!r})")
    tok = model.tokenizer
    if tok is None:
        tok = load_tokenizer(path)
    return loaded.finish(), tok


def load_any(path, dtype=None, int8: bool = False, int4: bool = False, report=None):
    """A language model (decoder-only) or a BERT encoder, whichever `path` holds, for a server
    that serves both -> (kind "lm" | "encoder", model, tokenizer)."""
    from .. import load_tokenizer

    loaded = _Loaded(path, dtype, int8, int4, report)
    arch = getattr(loaded.model.config, "arch", None)
    if arch not in ("decoder", "encoder"):
        raise UserError(f"{path}: cannot serve arch={arch!r} (a language model or a BERT "
                        "encoder is served)")
    tok = loaded.model.tokenizer
    if tok is None and arch == "encoder":
        tok = load_tokenizer(path)
    if tok is None:
        raise UserError(f"{path}: the model has no tokenizer")
    return ("lm" if arch == "decoder" else "encoder"), loaded.finish(), tok


def max_length_of(model, path, override=None) -> int:
    """Tokens per text for embedding: `override`, else sentence_bert_config.json's
    max_seq_length in `path`, else the position table; never more than the position table."""
    if override is not None:
        if override < 2:
            raise UserError(f"--max-length must be at least 2 (got {override})")
        return min(override, model.config.max_seq_len)
    st = Path(path) / "sentence_bert_config.json"
    if st.is_file():
        try:
            return min(int(json.loads(st.read_text())["max_seq_length"]), model.config.max_seq_len)
        except (ValueError, KeyError, TypeError):
            pass
    return model.config.max_seq_len
