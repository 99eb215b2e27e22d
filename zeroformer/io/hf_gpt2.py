"""Hugging Face GPT-2 (`model_type: gpt2`) <-> our Decoder: config both ways and one name table.

GPT-2 is the decoder with learned positions, pre-norm LayerNorm, a GELU (tanh) MLP and biases.
Layouts: HF stores its linear layers as `Conv1D`, whose weight is (in, out), the transpose of
nn.Linear's (out, in); query/key/value are one fused `c_attn` (d, 3d) matrix, split into q/k/v;
`lm_head.weight` is tied to `wte` (and then absent from the file).
"""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import UserError
from .table import ACT_IN, ACT_OUT, Family, Row, Table, Transform


def _t(t):
    return t.t() if t.dim() == 2 else t


CONV1D = Transform(lambda t, cfg: _t(t), lambda t, cfg: _t(t))         # (in, out) <-> (out, in)
CONV1D_QKV = Transform(lambda t, cfg: tuple(_t(t).split(cfg.d_model)),  # (d, 3d) -> 3 x (d, d)
                       lambda qkv, cfg: _t(torch.cat(qkv)))

TABLE = Table(prefix="transformer.", ignore=(r".*\.attn\.(masked_)?bias",), body=[
    Row("wte.weight", "embed.tok.weight"),
    Row("wpe.weight", "embed.pos.weight"),
    Row("h.{i}.ln_1.{w}", "blocks.{i}.norm_attn.{w}"),
    Row("h.{i}.attn.c_attn.{w}", tuple(f"blocks.{{i}}.self_attn.{p}_proj.{{w}}" for p in "qkv"),
        CONV1D_QKV),
    Row("h.{i}.attn.c_proj.{w}", "blocks.{i}.self_attn.o_proj.{w}", CONV1D),
    Row("h.{i}.ln_2.{w}", "blocks.{i}.norm_ffn.{w}"),
    Row("h.{i}.mlp.c_fc.{w}", "blocks.{i}.ffn.up.{w}", CONV1D),
    Row("h.{i}.mlp.c_proj.{w}", "blocks.{i}.ffn.down.{w}", CONV1D),
    Row("ln_f.{w}", "norm.{w}"),
], top=[Row("lm_head.weight", "lm_head.weight")])


def config_from_hf(c: dict, names=(), source="config.json") -> ModelConfig:
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if c.get(flag):
            raise UserError(f"{source}: GPT-2 option {flag}=true is not supported")
    if c.get("scale_attn_weights") is False:
        raise UserError(f"{source}: GPT-2 option scale_attn_weights=false is not supported")
    act = c.get("activation_function", "gelu_new")
    if act not in ACT_IN:
        raise UserError(f"{source}: activation_function {act!r} is not supported")
    d = c.get("n_embd", 768)
    return ModelConfig(
        arch="decoder", vocab_size=c.get("vocab_size", 50257), n_layer=c.get("n_layer", 12),
        d_model=d, n_head=c.get("n_head", 12), d_ff=c.get("n_inner") or 4 * d,
        activation=ACT_IN[act], gated_ffn=False, norm="layernorm",
        norm_eps=c.get("layer_norm_epsilon", 1e-5), prenorm=True, position="learned",
        max_seq_len=c.get("n_positions", 1024), bias=True,
        tie_embeddings=c.get("tie_word_embeddings", True),
        dropout=c.get("resid_pdrop", 0.1), attn_dropout=c.get("attn_pdrop", 0.1),
        bos_token_id=c.get("bos_token_id"), eos_token_id=c.get("eos_token_id"),
        pad_token_id=c.get("pad_token_id"))


def config_to_hf(cfg: ModelConfig, dtype: str) -> dict:
    problems = []
    if cfg.position != "learned" or cfg.norm != "layernorm" or not cfg.prenorm:
        problems.append("GPT-2 needs learned positions and pre-norm LayerNorm")
    if cfg.gated_ffn or not cfg.bias or cfg.n_kv_head != cfg.n_head:
        problems.append("GPT-2 has no gated MLP, no bias-free layers and no grouped-query attention")
    if cfg.head_dim * cfg.n_head != cfg.d_model:
        problems.append("GPT-2 needs head_dim * n_head == d_model")
    if problems:
        raise UserError("cannot export as GPT-2: " + "; ".join(problems))
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": cfg.vocab_size, "n_positions": cfg.max_seq_len, "n_embd": cfg.d_model,
        "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_inner": cfg.d_ff,
        "activation_function": ACT_OUT[cfg.activation], "layer_norm_epsilon": cfg.norm_eps,
        "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.attn_dropout,
        "tie_word_embeddings": cfg.tie_embeddings, "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id, "pad_token_id": cfg.pad_token_id, "dtype": dtype,
    }


FAMILY = Family(config_from_hf, config_to_hf, TABLE)
load, export = FAMILY.load, FAMILY.export
