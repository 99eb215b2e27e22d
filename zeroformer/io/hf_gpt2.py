"""Hugging Face GPT-2 (`model_type: gpt2`) <-> our Decoder.

GPT-2 is the decoder with learned positions, pre-norm LayerNorm, a GELU (tanh) MLP and biases.
Layout differences handled here:
- HF GPT-2 stores its linear layers as `Conv1D`, whose weight is (in, out) — the transpose of
  nn.Linear's (out, in) — so every matrix is transposed on the way in and out;
- the query/key/value projections are one fused `c_attn` (d, 3d) matrix: split into q/k/v;
- `lm_head.weight` is tied to `wte` (often absent from the file).

| HF name (prefix transformer.)  | ours (block i = blocks.i)          |
|--------------------------------|------------------------------------|
| wte, wpe                       | embed.tok, embed.pos               |
| h.i.ln_1, h.i.ln_2             | norm_attn, norm_ffn                |
| h.i.attn.c_attn (d, 3d)        | self_attn.q_proj/k_proj/v_proj (T) |
| h.i.attn.c_proj                | self_attn.o_proj (T)               |
| h.i.mlp.c_fc, h.i.mlp.c_proj   | ffn.up, ffn.down (T)               |
| ln_f, lm_head                  | norm, lm_head                      |
"""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import UserError
from . import hf_common

ACT_IN = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh",
          "gelu": "gelu", "relu": "relu", "silu": "silu", "swish": "silu"}
ACT_OUT = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu", "silu": "silu"}


def config_from_hf(c: dict, source="config.json") -> ModelConfig:
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


def state_from_hf(hf: dict, cfg: ModelConfig) -> dict:
    hf = hf_common.strip_prefix(hf, ("transformer.",))
    out = {"embed.tok.weight": hf["wte.weight"], "embed.pos.weight": hf["wpe.weight"],
           "norm.weight": hf["ln_f.weight"], "norm.bias": hf["ln_f.bias"]}
    if "lm_head.weight" in hf and not cfg.tie_embeddings:
        out["lm_head.weight"] = hf["lm_head.weight"]
    d = cfg.d_model
    for i in range(cfg.n_layer):
        h, o = f"h.{i}.", f"blocks.{i}."
        w, b = hf[h + "attn.c_attn.weight"].t(), hf[h + "attn.c_attn.bias"]      # (3d, d), (3d,)
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            out[o + f"self_attn.{name}.weight"] = w[j * d:(j + 1) * d]
            out[o + f"self_attn.{name}.bias"] = b[j * d:(j + 1) * d]
        pairs = [("attn.c_proj", "self_attn.o_proj"), ("mlp.c_fc", "ffn.up"),
                 ("mlp.c_proj", "ffn.down")]
        for theirs, ours in pairs:
            out[o + ours + ".weight"] = hf[h + theirs + ".weight"].t()
            out[o + ours + ".bias"] = hf[h + theirs + ".bias"]
        for theirs, ours in (("ln_1", "norm_attn"), ("ln_2", "norm_ffn")):
            out[o + ours + ".weight"] = hf[h + theirs + ".weight"]
            out[o + ours + ".bias"] = hf[h + theirs + ".bias"]
    return {k: v.contiguous() for k, v in out.items()}


def load(path, dtype=None):
    """A Hugging Face GPT-2 folder -> Decoder (eval mode), with `.tokenizer` if the folder has one."""
    from ..models.decoder import Decoder

    cfg = config_from_hf(hf_common.read_config(path), path)
    hf = hf_common.read_weights(path)
    try:
        state = state_from_hf(hf, cfg)
    except KeyError as e:
        raise UserError(f"{path}: GPT-2 weight {e} is missing") from None
    model = hf_common.load_state(Decoder(cfg), state, path, dtype)
    hf_common.attach_tokenizer(model, path)
    return model


# ------------------------------------------------------------------------------------- export
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


def state_to_hf(model) -> dict:
    cfg, sd = model.config, model.state_dict()
    out = {"transformer.wte.weight": sd["embed.tok.weight"],
           "transformer.wpe.weight": sd["embed.pos.weight"],
           "transformer.ln_f.weight": sd["norm.weight"], "transformer.ln_f.bias": sd["norm.bias"]}
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = sd["lm_head.weight"]
    for i in range(cfg.n_layer):
        h, o = f"transformer.h.{i}.", f"blocks.{i}."
        qkv = [o + f"self_attn.{n}" for n in ("q_proj", "k_proj", "v_proj")]
        out[h + "attn.c_attn.weight"] = torch.cat([sd[n + ".weight"] for n in qkv]).t()
        out[h + "attn.c_attn.bias"] = torch.cat([sd[n + ".bias"] for n in qkv])
        pairs = [("attn.c_proj", "self_attn.o_proj"), ("mlp.c_fc", "ffn.up"),
                 ("mlp.c_proj", "ffn.down")]
        for theirs, ours in pairs:
            out[h + theirs + ".weight"] = sd[o + ours + ".weight"].t()
            out[h + theirs + ".bias"] = sd[o + ours + ".bias"]
        for theirs, ours in (("ln_1", "norm_attn"), ("ln_2", "norm_ffn")):
            out[h + theirs + ".weight"] = sd[o + ours + ".weight"]
            out[h + theirs + ".bias"] = sd[o + ours + ".bias"]
    return out


def export(model, out):
    """Write `model` as a Hugging Face GPT-2 folder that `GPT2LMHeadModel.from_pretrained` reads."""
    cfg = config_to_hf(model.config, hf_common.torch_dtype_name(model))
    return hf_common.write_folder(out, cfg, state_to_hf(model), getattr(model, "tokenizer", None))
