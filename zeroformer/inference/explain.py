"""The data of `zeroformer explain`'s page: one forward pass (trace.py) as a plain dict of lists,
numbers and strings that the page (explain_page.py) embeds as JSON and draws.

What it holds (T tokens per side, L layers, h heads, V the vocabulary):
    tokens      per side: id, the vocabulary piece (sub-word marks visible: "Ġ", "##", "▁"), text
    embedding   per side and token: ||E[x]·s||, ||P[pos]||, ||h_0|| and the first DIMS dimensions
                of each (h_0 = the first block's input: after the sum, and BERT's LayerNorm)
    attention   per stack (self / encoder / decoder / cross), layer and head: the (T_q, T_k)
                softmax(QK^T/sqrt(d_k) + M) of the reference path, rounded to 5 decimals
    residual    per stack: ||h_l|| of each token after the embeddings and after each block
    prediction  per position of the predicting side: the `top` largest logits z with their ids,
                and p = softmax(z_full) over the whole vocabulary at T = 1; the page's slider
                recomputes softmax(z / T) over these `top` logits only (the whole vocabulary
                when V <= top), and says how much of p they hold. None for a BERT without MLM
                head (MiniLM): the page then shows ||h_L|| per token and says why.
"""

from __future__ import annotations

import math

import torch

from .trace import STACKS, run_trace

DIMS = 32          # embedding dimensions drawn per token
DECIMALS = 5       # attention weights and logits in the page


def _r(x: torch.Tensor, decimals: int = DECIMALS):
    """A tensor as nested lists of floats rounded to `decimals` (a compact, exact-enough JSON)."""
    return torch.round(x.double(), decimals=decimals).tolist()


def _token(tok, i: int) -> dict:
    try:
        piece = tok.id_to_token(i)
    except Exception:  # noqa: BLE001 - a tokenizer without a piece for this id: show its text
        piece = None
    text = tok.decode([i])
    return {"id": i, "piece": piece if isinstance(piece, str) else text, "text": text}


def describe_model(model, path) -> dict:
    c = model.config
    return {"path": str(path), "arch": c.arch, "layers": c.n_layer,
            "encoder_layers": c.n_encoder_layer if c.arch == "encoder_decoder" else None,
            "heads": c.n_head, "kv_heads": c.n_kv_head, "d_model": c.d_model,
            "vocab_size": c.vocab_size, "position": c.position, "norm": c.norm,
            "prenorm": c.prenorm, "context": c.max_seq_len,
            "parameters": sum(p.numel() for p in model.parameters()),
            "mlm_head": getattr(model, "mlm", None) is not None}


def explain(model, tok, text: str, target: str | None = None, max_tokens: int = 64,
            top: int = 100, path: str = "") -> dict:
    """The page's data for one forward pass of `model` over `text` (see the module docstring)."""
    tr = run_trace(model, tok, text, target, max_tokens)
    data = {"model": describe_model(model, path), "kind": tr.kind, "text": text,
            "target": target, "notes": list(tr.notes),
            "tokens": {s: [_token(tok, i) for i in ids] for s, ids in tr.sides.items()},
            "embedding": {}, "attention": [], "residual": [], "prediction": None}
    for side, parts in tr.embedding.items():
        stack = {"input": "self", "source": "encoder", "target": "decoder"}[side]
        parts = dict(parts, h0=tr.residual[stack][0])
        data["embedding"][side] = {"dims": min(DIMS, model.config.d_model), **{
            name: {"norm": _r(v.norm(dim=-1), 4), "head": _r(v[:, :DIMS], 4)}
            for name, v in parts.items()}}
    for stack, layers in tr.attention.items():
        label, q, k = STACKS[stack]
        data["attention"].append({"name": stack, "label": label, "queries": q, "keys": k,
                                  "layers": [_r(w) for w in layers]})
    for stack, states in tr.residual.items():
        data["residual"].append({"name": stack, "side": STACKS[stack][1],
                                 "norms": _r(states.norm(dim=-1), 4)})
    if tr.logits is not None:
        data["prediction"] = prediction(tok, tr, top)
    return data


def prediction(tok, tr, top: int) -> dict:
    """Per position: the `top` largest logits, their ids and their full-vocabulary p at T = 1."""
    logits = tr.logits                                          # (T, V)
    k = min(top, logits.size(-1))
    p = torch.softmax(logits.double(), dim=-1)
    z, ids = logits.topk(k, dim=-1)
    rows = [{"ids": ids[t].tolist(), "p": _r(p[t, ids[t]], 6),
             "logits": [v if math.isfinite(v) else None for v in _r(z[t])]}  # -inf: null
            for t in range(logits.size(0))]
    seen = sorted({i for r in rows for i in r["ids"]})
    side = tr.predicts
    ids_in = tr.sides[side]
    if tr.kind == "encoder":
        mask = getattr(tok, "mask_token_id", None)
        default = ids_in.index(mask) if mask in ids_in else min(1, len(ids_in) - 1)
        what = "the token at this position (BERT's masked-LM head)"
    else:
        default = len(ids_in) - 1
        what = "the next token after this position"
    return {"side": side, "vocab_size": logits.size(-1), "top": k, "what": what,
            "default": default, "positions": rows,
            "vocab": {str(i): _token(tok, i) for i in seen}}
