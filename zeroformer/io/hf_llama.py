"""Hugging Face LLaMA (`model_type: llama`; also SmolLM2, TinyLlama) <-> our Decoder.

LLaMA is the decoder with RoPE, pre-norm RMSNorm, a SwiGLU MLP, no biases and grouped-query
attention. HF stores nn.Linear weights in our (out, in) layout and uses the same "rotate half" RoPE
pairing as `nn/positions.py`, so the table is names only.
"""

from __future__ import annotations

from ..config import ModelConfig
from ..errors import UserError
from .table import Family, Row, Table

TABLE = Table(prefix="model.", ignore=(r".*rotary_emb\.inv_freq",), body=[
    Row("embed_tokens.weight", "embed.tok.weight"),
    Row("layers.{i}.input_layernorm.weight", "blocks.{i}.norm_attn.weight"),
    *(Row(f"layers.{{i}}.self_attn.{p}_proj.{{w}}", f"blocks.{{i}}.self_attn.{p}_proj.{{w}}")
      for p in "qkvo"),
    Row("layers.{i}.post_attention_layernorm.weight", "blocks.{i}.norm_ffn.weight"),
    *(Row(f"layers.{{i}}.mlp.{p}_proj.{{w}}", f"blocks.{{i}}.ffn.{p}.{{w}}")
      for p in ("gate", "up", "down")),
    Row("norm.weight", "norm.weight"),
], top=[Row("lm_head.weight", "lm_head.weight")])


def rope_theta(c: dict, source) -> float:
    """rope_theta from transformers 5's `rope_parameters` or the older top-level fields."""
    params = c.get("rope_parameters") or {}
    scaling = c.get("rope_scaling") or {}
    kind = params.get("rope_type", scaling.get("rope_type", scaling.get("type", "default")))
    if kind != "default":
        raise UserError(f"{source}: RoPE scaling {kind!r} is not supported (only default RoPE)")
    return float(params.get("rope_theta", c.get("rope_theta", 10000.0)))


def config_from_hf(c: dict, names=(), source="config.json") -> ModelConfig:
    if c.get("hidden_act", "silu") != "silu":
        raise UserError(f"{source}: hidden_act {c.get('hidden_act')!r} is not supported (silu)")
    if bool(c.get("attention_bias", False)) != bool(c.get("mlp_bias", False)):
        raise UserError(f"{source}: attention_bias != mlp_bias is not supported")
    if c.get("pretraining_tp", 1) not in (1, None):
        raise UserError(f"{source}: pretraining_tp > 1 is not supported")
    d, h = c.get("hidden_size", 4096), c.get("num_attention_heads", 32)
    return ModelConfig(
        arch="decoder", vocab_size=c.get("vocab_size", 32000),
        n_layer=c.get("num_hidden_layers", 32), d_model=d, n_head=h,
        n_kv_head=c.get("num_key_value_heads") or h, head_dim=c.get("head_dim") or d // h,
        d_ff=c.get("intermediate_size", 11008), activation="silu", gated_ffn=True, norm="rmsnorm",
        norm_eps=c.get("rms_norm_eps", 1e-6), prenorm=True, position="rope",
        rope_base=rope_theta(c, source), max_seq_len=c.get("max_position_embeddings", 2048),
        bias=bool(c.get("attention_bias", False)),
        tie_embeddings=bool(c.get("tie_word_embeddings", False)), dropout=0.0,
        attn_dropout=c.get("attention_dropout", 0.0), bos_token_id=c.get("bos_token_id"),
        eos_token_id=c.get("eos_token_id"), pad_token_id=c.get("pad_token_id"))


def config_to_hf(cfg: ModelConfig, dtype: str) -> dict:
    if (cfg.position != "rope" or cfg.norm != "rmsnorm" or not cfg.prenorm or not cfg.gated_ffn
            or cfg.activation != "silu"):
        raise UserError("cannot export as LLaMA: needs RoPE, pre-norm RMSNorm and a SwiGLU MLP")
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model, "intermediate_size": cfg.d_ff,
        "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.n_kv_head, "head_dim": cfg.head_dim, "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len, "rms_norm_eps": cfg.norm_eps,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_base},
        "attention_bias": cfg.bias, "mlp_bias": cfg.bias, "attention_dropout": cfg.attn_dropout,
        "tie_word_embeddings": cfg.tie_embeddings, "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id, "pad_token_id": cfg.pad_token_id, "dtype": dtype,
    }


FAMILY = Family(config_from_hf, config_to_hf, TABLE)
load, export = FAMILY.load, FAMILY.export
