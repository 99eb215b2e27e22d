"""Load a model for a job: a language model, a translator, an encoder or a classifier.

Each loader returns ``(model, tokenizer)`` with the model in eval mode, or raises UserError
naming the path when the model is not of the kind the job needs or carries no tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError


def _load(path, dtype=None):
    from .. import load

    return load(path, dtype=dtype)


def load_lm(path, tokenizer=None, dtype=None, int8: bool = False, int4: bool = False):
    """A decoder-only model and its tokenizer (`tokenizer`: a path overriding the model's own);
    int8 / int4: weight-only quantized linear layers (nn/fast.py)."""
    from .. import load_tokenizer

    model = _load(path, dtype=dtype)
    if getattr(model.config, "arch", None) != "decoder":
        raise UserError(f"{path}: not a decoder-only language model (arch={model.config.arch})")
    tok = load_tokenizer(tokenizer) if tokenizer else model.tokenizer
    if tok is None:
        raise UserError(f"{path}: the model has no tokenizer; pass --tokenizer PATH")
    if int8 and int4:
        raise UserError("--int8 and --int4 exclude each other")
    if int8 or int4:
        from ..nn.fast import prepare_inference

        prepare_inference(model, fuse=True, int8=int8, int4=int4, int4_head="refine")
    return model.eval(), tok


def load_translator(path):
    """An encoder-decoder and its tokenizer."""
    model = _load(path)
    arch = getattr(model.config, "arch", None)
    if arch != "encoder_decoder":
        raise UserError(f"{path}: not a translator (an encoder-decoder model); this model is "
                        f"arch={arch!r}. Use `zeroformer generate` for language models")
    tok = model.tokenizer
    if tok is None:
        raise UserError(f"{path}: the model has no tokenizer.json (Marian SentencePiece "
                        "tokenizers are not supported; train one with `zeroformer train "
                        "translate-es-en`)")
    return model.eval(), tok


def load_encoder(path, classifier: bool = False):
    """A BERT model (any heads; with `classifier`, one with a classification head) and its
    tokenizer (the model's own, else the one in `path`)."""
    from .. import load_tokenizer

    model = _load(path)
    if classifier:
        if model.config.arch != "encoder" or getattr(model, "classifier", None) is None:
            raise UserError(f"{path}: not a BERT sequence classifier (no classification head)")
    elif getattr(model.config, "arch", None) != "encoder":
        raise UserError(f"{path}: not a BERT (encoder) model (arch={model.config.arch!r})")
    tok = model.tokenizer
    if tok is None:
        tok = load_tokenizer(path)
    return model.eval(), tok


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
