"""Losses. Each returns (mean loss over counted positions, number of counted positions).

Cross-entropy with label smoothing (the paper's epsilon_ls, section 5.4): the target
distribution puts 1 - eps on the true token and eps spread uniformly over the vocabulary:

    q(k) = (1 - eps) * [k = y] + eps / V
    L = - sum_k q(k) log softmax(z)_k = (1 - eps) * NLL(y) + eps * mean_k(-log softmax(z)_k)

Positions whose target is `ignore_index` (padding, unmasked MLM positions) are not counted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0,
                  ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, int]:
    """logits (..., V), targets (...) long -> (scalar loss in fp32, n counted targets)."""
    logits = logits.reshape(-1, logits.size(-1)).float()
    targets = targets.reshape(-1)
    n = int((targets != ignore_index).sum())
    loss = F.cross_entropy(logits, targets, ignore_index=ignore_index,
                           label_smoothing=label_smoothing)
    return loss, n
