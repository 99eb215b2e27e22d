"""Run a model once on a text and keep what happens inside it: the tokens, every attention map,
the residual stream after each layer and the output logits. The pictures (viz.py) and the
explorable page (explain.py) both read a Trace.

What is fed, per kind of model (config.arch):

    decoder          input  = the text's tokens (BOS first when the tokenizer asks for one)
    encoder (BERT)   input  = [CLS] text [SEP]
    encoder_decoder  source = the text's tokens + </s>; target = the start token + `target`'s
                     tokens, or + the model's greedy translation (its </s> left off, so the last
                     position predicts what comes next)

A side longer than `max_tokens` (or the model's context) is cut to its first tokens and a note
says so. Attention comes from the reference path (MultiHeadAttention.keep_weights: softmax(QK^T /
sqrt(d_k) + M), rows summing to 1), one list of (heads, T_q, T_k) maps per stack:

    self     decoder-only / BERT self-attention        queries input,  keys input
    encoder  the encoder's self-attention              queries source, keys source
    decoder  the decoder's (causal) self-attention     queries target, keys target
    cross    the decoder's attention to the encoder    queries target, keys source
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import UserError

#: stack -> (what it is, query side, key side)
STACKS = {
    "self": ("self-attention", "input", "input"),
    "encoder": ("encoder self-attention", "source", "source"),
    "decoder": ("decoder self-attention (causal)", "target", "target"),
    "cross": ("cross-attention: target queries, source keys", "target", "source"),
}


@dataclass
class Trace:
    """kind: config.arch. sides: side -> token ids. notes: what was cut or chosen.
    attention: stack -> [(heads, T_q, T_k) per layer]. residual: stack -> (1 + L, T, d), the
    residual stream h_l after the embeddings (l = 0, the first block's input) and after each
    block l = 1..L. embedding: side -> {"token": E[x]*s, "position": P[pos]} as (T, d) (no
    position for RoPE models: positions act inside attention). logits: (T, V) of the predicting
    side (`predicts`), or None (a BERT without MLM head); hidden: (T, d) that side's final
    hidden states (after the final norm, if the model has one)."""
    kind: str
    sides: dict[str, list[int]]
    notes: list[str] = field(default_factory=list)
    attention: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    residual: dict[str, torch.Tensor] = field(default_factory=dict)
    embedding: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    logits: torch.Tensor | None = None
    hidden: torch.Tensor | None = None
    predicts: str = "input"


def stack_of(name: str, module) -> str:
    """The stack a MultiHeadAttention named `name` in the model belongs to (see STACKS)."""
    if module.cross:
        return "cross"
    top = name.split(".")[0]
    return top if top in ("encoder", "decoder") else "self"


@torch.no_grad()
def capture_attention(model, forward):
    """Run `forward()` with every attention layer on the reference path keeping its weights ->
    ({stack: [(heads, T_q, T_k) of batch row 0, per layer]}, forward's result). The flags are
    restored and the stored weights dropped afterwards; the model computes the same numbers."""
    from ..nn.attention import MultiHeadAttention

    found = [(stack_of(n, m), m) for n, m in model.named_modules()
             if isinstance(m, MultiHeadAttention)]
    was_training = model.training
    model.eval()
    for _, m in found:
        m.keep_weights = True
    try:
        out = forward()
        stacks: dict[str, list[torch.Tensor]] = {}
        for stack, m in found:
            if m.last_weights is not None:
                stacks.setdefault(stack, []).append(m.last_weights[0].float())
        return stacks, out
    finally:
        for _, m in found:
            m.keep_weights, m.last_weights = False, None
        model.train(was_training)


def _residual_hooks(blocks, into: list):
    """Hooks recording batch row 0 of the first block's input (h_0) and of each block's output."""
    def keep(x):
        into.append(x[0].float())

    hooks = [blocks[0].register_forward_pre_hook(lambda m, args: keep(args[0]))]
    return hooks + [b.register_forward_hook(lambda m, args, out: keep(out)) for b in blocks]


def _embedding_parts(emb, ids: list[int]) -> dict[str, torch.Tensor]:
    """E[x] * s and P[pos] (positions 0..T-1) of one Embeddings module, as (T, d)."""
    x = torch.tensor([ids], device=emb.tok.weight.device)
    parts = {"token": (emb.tok(x) * emb.scale)[0].float()}
    if emb.pos is not None:
        pos = torch.arange(len(ids), device=x.device).unsqueeze(0) + emb.position_offset
        parts["position"] = emb.pos(pos)[0].float()
    return parts


def _cut(ids: list[int], limit: int, what: str, notes: list[str]) -> list[int]:
    if len(ids) > limit:
        notes.append(f"the {what} has {len(ids)} tokens; only its first {limit} are shown")
        return ids[:limit]
    return ids


def target_ids(tok, text: str) -> list[int]:
    """A target text's ids: an opus-mt tokenizer cuts it with its target SentencePiece model."""
    target, stoi = getattr(tok, "target", None), getattr(tok, "stoi", None)
    if target is not None and stoi is not None:
        unk = stoi["<unk>"]
        return [stoi.get(p, unk) for p in target.encode_pieces(text)]
    return tok.encode(text)


def prepare(model, tok, text: str, target: str | None = None, max_tokens: int = 64):
    """-> (sides {side: ids}, notes) for `text` (and `target`: a text, or its token ids after
    the start token), cut to max_tokens."""
    from .text import encode_prompt

    cfg, notes = model.config, []
    limit = min(max_tokens, cfg.max_seq_len)
    if limit < 2:
        raise UserError(f"--max-tokens must be at least 2 (got {max_tokens})")
    if cfg.arch == "decoder":
        ids = _cut(encode_prompt(tok, text), limit, "text", notes)
        if not ids:
            raise UserError("--text encodes to no tokens")
        return {"input": ids}, notes
    if cfg.arch == "encoder":
        body = _cut(tok.encode(text), limit - 2, "text (without [CLS] and [SEP])", notes)
        return {"input": tok.wrap(body)[0]}, notes
    src = _cut(tok.encode(text), limit - 1, "source (without </s>)", notes) + [cfg.eos_token_id]
    x = torch.tensor([src], device=next(model.parameters()).device)
    if target is not None:
        start = model.generation_start(x, None, True)[0][0].tolist()
        ids = list(target) if isinstance(target, list) else target_ids(tok, target)
        tgt = start + _cut(ids, limit - 1, "target", notes)
    else:
        gen = model.generate(x, limit - 1, eos_token_id=cfg.eos_token_id)[0].tolist()
        stop = {cfg.eos_token_id, cfg.pad_token_id}
        end = next((i for i in range(1, len(gen)) if gen[i] in stop), len(gen))
        tgt = gen[:end]
        notes.append(f"target: the model's greedy translation of the source ({end - 1} tokens"
                     + ("; its </s> left off)" if end < len(gen) else ", cut at the limit)"))
    return {"source": src, "target": tgt}, notes


@torch.no_grad()
def run_trace(model, tok, text: str, target: str | None = None, max_tokens: int = 64) -> Trace:
    """Feed `text` (and `target`) as the module docstring says and keep what happens inside."""
    cfg = model.config
    sides, notes = prepare(model, tok, text, target, max_tokens)
    dev = next(model.parameters()).device
    t = {k: torch.tensor([v], device=dev) for k, v in sides.items()}
    tr = Trace(cfg.arch, sides, notes)
    states: dict[str, list] = {}
    hooks = []
    if cfg.arch == "encoder_decoder":
        tr.predicts = "target"
        for stack, blocks in (("encoder", model.encoder), ("decoder", model.decoder)):
            hooks += _residual_hooks(blocks, states.setdefault(stack, []))
        tr.embedding = {"source": _embedding_parts(model.embed, sides["source"]),
                        "target": _embedding_parts(model.target_embeddings, sides["target"])}

        def forward():
            h = model(t["source"], t["target"], return_hidden=True)
            return h, model.lm_head(h) + model.final_logits_bias.to(h.dtype)
    else:
        hooks += _residual_hooks(model.blocks, states.setdefault("self", []))
        tr.embedding = {"input": _embedding_parts(model.embed, sides["input"])}

        def forward():
            if cfg.arch == "encoder":
                h = model.encode(t["input"])
                return h, (model.mlm_logits(h) if getattr(model, "mlm", None) is not None
                           else None)
            h = model(t["input"], return_hidden=True)
            return h, model.lm_head(h)
    try:
        tr.attention, (hidden, logits) = capture_attention(model, forward)
    finally:
        for h in hooks:
            h.remove()
    tr.residual = {k: torch.stack(v) for k, v in states.items()}
    tr.hidden = hidden[0].float()
    tr.logits = logits[0].float() if logits is not None else None
    return tr
