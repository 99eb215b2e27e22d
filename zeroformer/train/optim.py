"""AdamW with decoupled weight decay (Loshchilov & Hutter 2019), and its parameter groups; or
plain SGD, theta <- theta - lr * g (`optimizer="sgd"`: word2vec's update, Mikolov et al. 2013).

    m_t = b1 m + (1-b1) g        v_t = b2 v + (1-b2) g^2
    theta <- theta - lr * ( m_hat / (sqrt(v_hat) + eps) + wd * theta )

Decay applies to weight matrices of linear layers only. Biases, norm gains/biases and embedding
tables (including an output projection tied to the embedding) are not decayed: shrinking them
towards 0 has no regularising meaning (norm gains and biases) or penalises rare tokens whose rows
receive few gradient updates (embeddings).
"""

from __future__ import annotations

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    no_decay = {id(p) for m in model.modules() if isinstance(m, nn.Embedding)
                for p in m.parameters(recurse=False)}
    decay, rest, seen = [], [], set()
    for p in model.parameters():  # shared (tied) parameters appear once
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 and id(p) not in no_decay else rest).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": rest, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    """AdamW over `param_groups`, with the betas/eps/weight decay of TrainConfig `cfg` (or SGD
    without momentum over the same groups when cfg.optimizer == "sgd")."""
    if getattr(cfg, "optimizer", "adamw") == "sgd":
        return torch.optim.SGD(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr,
                             betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
