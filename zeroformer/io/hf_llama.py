"""Hugging Face LLaMA (`model_type: llama`; also Mistral-style SmolLM2, TinyLlama) <-> our Decoder.

LLaMA is the decoder with RoPE, pre-norm RMSNorm, a SwiGLU MLP, no biases and grouped-query
attention. HF stores nn.Linear weights in our (out, in) layout and uses the same "rotate half" RoPE
pairing as `nn/positions.py`, so the translation is names only:

| HF name (prefix model.)                     | ours (block i = blocks.i)     |
|---------------------------------------------|-------------------------------|
| embed_tokens                                | embed.tok                     |
| layers.i.input_layernorm                    | norm_attn                     |
| layers.i.self_attn.{q,k,v,o}_proj           | self_attn.{q,k,v,o}_proj      |
| layers.i.post_attention_layernorm           | norm_ffn                      |
| layers.i.mlp.{gate,up,down}_proj            | ffn.{gate,up,down}            |
| norm, lm_head (tied to embed_tokens or not) | norm, lm_head                 |
"""

from __future__ import annotations

from ..config import ModelConfig
from ..errors import UserError
from . import hf_common

_LAYER = [("input_layernorm", "norm_attn"), ("post_attention_layernorm", "norm_ffn"),
          ("self_attn.q_proj", "self_attn.q_proj"), ("self_attn.k_proj", "self_attn.k_proj"),
          ("self_attn.v_proj", "self_attn.v_proj"), ("self_attn.o_proj", "self_attn.o_proj"),
          ("mlp.gate_proj", "ffn.gate"), ("mlp.up_proj", "ffn.up"), ("mlp.down_proj", "ffn.down")]


def rope_theta(c: dict, source) -> float:
    """rope_theta from transformers 5's `rope_parameters` or the older top-level fields."""
    params = c.get("rope_parameters") or {}
    scaling = c.get("rope_scaling") or {}
    kind = params.get("rope_type", scaling.get("rope_type", scaling.get("type", "default")))
    if kind != "default":
        raise UserError(f"{source}: RoPE scaling {kind!r} is not supported (only default RoPE)")
    return float(params.get("rope_theta", c.get("rope_theta", 10000.0)))


def config_from_hf(c: dict, source="config.json") -> ModelConfig:
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


def state_from_hf(hf: dict, cfg: ModelConfig) -> dict:
    hf = hf_common.strip_prefix(hf, ("model.",)) if "model.embed_tokens.weight" in hf else hf
    out = {"embed.tok.weight": hf["embed_tokens.weight"], "norm.weight": hf["norm.weight"]}
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = hf["lm_head.weight"]
    suffixes = (".weight", ".bias") if cfg.bias else (".weight",)
    for i in range(cfg.n_layer):
        for theirs, ours in _LAYER:
            for s in suffixes if "proj" in theirs else (".weight",):
                out[f"blocks.{i}.{ours}{s}"] = hf[f"layers.{i}.{theirs}{s}"]
    return out


def load(path, dtype=None):
    """A Hugging Face LLaMA folder -> Decoder (eval mode), with `.tokenizer` when it has one."""
    from ..models.decoder import Decoder

    cfg = config_from_hf(hf_common.read_config(path), path)
    try:
        state = state_from_hf(hf_common.read_weights(path), cfg)
    except KeyError as e:
        raise UserError(f"{path}: LLaMA weight {e} is missing") from None
    model = hf_common.load_state(Decoder(cfg), state, path, dtype)
    hf_common.attach_tokenizer(model, path)
    return model


# ------------------------------------------------------------------------------------- export
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


def state_to_hf(model) -> dict:
    cfg, sd = model.config, model.state_dict()
    out = {"model.embed_tokens.weight": sd["embed.tok.weight"], "model.norm.weight": sd["norm.weight"]}
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = sd["lm_head.weight"]
    suffixes = (".weight", ".bias") if cfg.bias else (".weight",)
    for i in range(cfg.n_layer):
        for theirs, ours in _LAYER:
            for s in suffixes if "proj" in theirs else (".weight",):
                out[f"model.layers.{i}.{theirs}{s}"] = sd[f"blocks.{i}.{ours}{s}"]
    return out


def export(model, out):
    """Write `model` as a Hugging Face LLaMA folder that `LlamaForCausalLM.from_pretrained` reads."""
    cfg = config_to_hf(model.config, hf_common.torch_dtype_name(model))
    return hf_common.write_folder(out, cfg, state_to_hf(model), getattr(model, "tokenizer", None))
