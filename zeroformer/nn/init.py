"""Weight initialisation shared by GPT-2, LLaMA and BERT: w ~ N(0, 0.02²), biases 0.

(LayerNorm/RMSNorm keep their own init: gain 1, bias 0.) The 2017 encoder–decoder uses Xavier
uniform instead, in zeroformer/models/encoder_decoder.py.
"""

from __future__ import annotations

from torch import nn


def init_normal(module: nn.Module, std: float = 0.02) -> None:
    """Apply with `model.apply(init_normal)`: Linear and Embedding weights ~ N(0, std²)."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=std)
