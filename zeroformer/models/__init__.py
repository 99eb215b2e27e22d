"""Model classes. `build_model(cfg)` picks the class from `cfg.arch`."""

from __future__ import annotations

import importlib

from ..config import ModelConfig

_ARCH = {
    "decoder": ("decoder", "Decoder"),
    "encoder": ("bert", "Bert"),
    "encoder_decoder": ("encoder_decoder", "EncoderDecoder"),
    "word2vec": ("word2vec", "Word2Vec"),
}


def build_model(cfg: ModelConfig):
    module, name = _ARCH[cfg.arch]
    return getattr(importlib.import_module(f".{module}", __name__), name)(cfg)
