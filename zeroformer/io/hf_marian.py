"""Hugging Face Marian (`model_type: marian`, the opus-mt translators) <-> our EncoderDecoder.

Marian *is* the 2017 Transformer, post-norm, with these choices (config.json -> ModelConfig):

| Marian config                       | ModelConfig                                        |
|-------------------------------------|----------------------------------------------------|
| encoder_layers / decoder_layers     | n_encoder_layer / n_layer                          |
| d_model, *_attention_heads, *_ffn_dim | d_model, n_head, d_ff (encoder and decoder equal) |
| activation_function (swish = SiLU)  | activation ("swish"/"silu" -> silu, "gelu_new" -> gelu_tanh) |
| scale_embedding                     | scale_embeddings (x sqrt(d_model))                 |
| max_position_embeddings             | max_seq_len; positions are the fixed sinusoidal table, "split" layout (all sin, then all cos), starting at 0 |
| share_encoder_decoder_embeddings    | extra["share_embeddings"]                          |
| tie_word_embeddings                 | tie_embeddings (lm_head = decoder embedding)       |
| pad_token_id (= decoder_start_token_id) | pad_token_id, decoder_start_token_id           |
| final_logits_bias (1, V) buffer     | final_logits_bias (V,) buffer                      |
| LayerNorm eps (torch default 1e-5)  | norm_eps 1e-5, prenorm False, no final norm        |

Tensor names: model.{encoder,decoder}.layers.i.{self_attn,encoder_attn}.{q,k,v,out}_proj,
*_layer_norm, fc1, fc2 -> encoder/decoder.i.{self_attn,cross_attn}.{q,k,v,o}_proj, norm_*, ffn.up/down.
Marian's SentencePiece tokenizers are not read; a `tokenizer.json` of ours in the folder is.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..config import ModelConfig
from ..errors import UserError

ACT_IN = {"swish": "silu", "silu": "silu", "relu": "relu", "gelu": "gelu", "gelu_new": "gelu_tanh",
          "gelu_pytorch_tanh": "gelu_tanh"}
ACT_OUT = {"silu": "swish", "relu": "relu", "gelu": "gelu", "gelu_tanh": "gelu_new"}
LAYER = {"self_attn.q_proj": "self_attn.q_proj", "self_attn.k_proj": "self_attn.k_proj",
         "self_attn.v_proj": "self_attn.v_proj", "self_attn.out_proj": "self_attn.o_proj",
         "self_attn_layer_norm": "norm_attn",
         "encoder_attn.q_proj": "cross_attn.q_proj", "encoder_attn.k_proj": "cross_attn.k_proj",
         "encoder_attn.v_proj": "cross_attn.v_proj", "encoder_attn.out_proj": "cross_attn.o_proj",
         "encoder_attn_layer_norm": "norm_cross",
         "fc1": "ffn.up", "fc2": "ffn.down", "final_layer_norm": "norm_ffn"}


def config_from_hf(hf: dict, where="config.json") -> ModelConfig:
    def same(a, b):
        if hf.get(a) != hf.get(b, hf.get(a)):
            raise UserError(f"{where}: {a}={hf.get(a)} differs from {b}={hf.get(b)}; "
                            "only equal encoder/decoder sizes are supported")
        return hf[a]

    act = hf.get("activation_function", "gelu")
    if act not in ACT_IN:
        raise UserError(f"{where}: activation_function {act!r} is not supported ({', '.join(ACT_IN)})")
    vocab = hf["vocab_size"]
    if hf.get("decoder_vocab_size") not in (None, vocab):
        raise UserError(f"{where}: decoder_vocab_size {hf['decoder_vocab_size']} != vocab_size "
                        f"{vocab} (separate target vocabularies are not supported)")
    eos = hf.get("eos_token_id", 0)
    eos = eos[0] if isinstance(eos, list) else eos
    return ModelConfig(
        arch="encoder_decoder", vocab_size=vocab, n_layer=hf["decoder_layers"],
        n_encoder_layer=hf["encoder_layers"], d_model=hf["d_model"],
        n_head=same("encoder_attention_heads", "decoder_attention_heads"),
        d_ff=same("encoder_ffn_dim", "decoder_ffn_dim"), activation=ACT_IN[act], norm="layernorm",
        norm_eps=1e-5, prenorm=False, final_norm=False, position="sinusoidal",
        sinusoidal_layout="split", max_seq_len=hf.get("max_position_embeddings", 512), bias=True,
        tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
        scale_embeddings=bool(hf.get("scale_embedding", False)),
        dropout=float(hf.get("dropout", 0.1)), attn_dropout=float(hf.get("attention_dropout", 0.0)),
        pad_token_id=hf.get("pad_token_id"), eos_token_id=eos, bos_token_id=hf.get("bos_token_id"),
        decoder_start_token_id=hf.get("decoder_start_token_id", hf.get("pad_token_id")),
        extra={"share_embeddings": bool(hf.get("share_encoder_decoder_embeddings", True))})


def hf_to_ours(name: str) -> str | None:
    """A Marian tensor name -> ours (None: not a weight we keep, e.g. sinusoidal tables)."""
    if name == "final_logits_bias":
        return name
    if name == "lm_head.weight":
        return name
    if name in ("model.shared.weight", "model.encoder.embed_tokens.weight"):
        return "embed.tok.weight"
    if name == "model.decoder.embed_tokens.weight":
        return "tgt_embed.tok.weight"
    parts = name.split(".")
    if len(parts) >= 5 and parts[0] == "model" and parts[2] == "layers":
        stack, i, rest = parts[1], parts[3], ".".join(parts[4:])
        sub, leaf = rest.rsplit(".", 1)
        if sub in LAYER and stack in ("encoder", "decoder"):
            return f"{stack}.{i}.{LAYER[sub]}.{leaf}"
    return None


def load(path, dtype=None):
    from ..io.checkpoint import parse_dtype
    from ..models.encoder_decoder import EncoderDecoder

    path = Path(path)
    hf = json.loads((path / "config.json").read_text())
    cfg = config_from_hf(hf, path / "config.json")
    model = EncoderDecoder(cfg)
    ours = model.state_dict()
    got: dict[str, torch.Tensor] = {}
    for f in sorted(path.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():
                name = hf_to_ours(key)
                if name is None:
                    continue
                if name == "tgt_embed.tok.weight" and model.tgt_embed is None:
                    name = "embed.tok.weight"  # shared: any copy of the one table will do
                if name == "lm_head.weight" and cfg.tie_embeddings:
                    continue
                t = st.get_tensor(key)
                if name == "final_logits_bias":
                    t = t.reshape(-1)
                if name not in ours or ours[name].shape != t.shape:
                    raise UserError(f"{f}: tensor {key} {tuple(t.shape)} does not fit config.json")
                got.setdefault(name, t)
    missing = [k for k in ours if k not in got and not (k == "lm_head.weight" and cfg.tie_embeddings)
               and k != "final_logits_bias"]
    if missing:
        raise UserError(f"{path}: missing Marian weights for {', '.join(missing[:5])}"
                        f"{' ...' if len(missing) > 5 else ''}")
    model.load_state_dict(got, strict=False)
    dtype = parse_dtype(dtype)
    if dtype is not None:
        model.to(dtype)
    model.eval()
    if (path / "tokenizer.json").exists():
        from ..tokenizers import load_tokenizer

        try:
            model.tokenizer = load_tokenizer(path / "tokenizer.json")
        except UserError:
            pass  # a Marian SentencePiece-based tokenizer.json we cannot read: weights still load
    return model


def config_to_hf(cfg: ModelConfig) -> dict:
    if cfg.arch != "encoder_decoder" or cfg.prenorm or cfg.final_norm or cfg.norm != "layernorm" \
            or cfg.position != "sinusoidal" or cfg.gated_ffn or not cfg.bias \
            or cfg.n_kv_head != cfg.n_head or cfg.activation not in ACT_OUT:
        raise UserError("only post-norm encoder-decoders with sinusoidal positions, biases and a "
                        "plain MLP can be exported as Marian")
    if cfg.sinusoidal_layout != "split":
        raise UserError("Marian uses the 'split' sinusoidal layout (all sines, then all cosines); "
                        "this model was trained with 'interleaved' and cannot be exported as Marian")
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else 0
    return {
        "architectures": ["MarianMTModel"], "model_type": "marian", "vocab_size": cfg.vocab_size,
        "decoder_vocab_size": cfg.vocab_size, "d_model": cfg.d_model,
        "encoder_layers": cfg.n_encoder_layer, "decoder_layers": cfg.n_layer,
        "encoder_attention_heads": cfg.n_head, "decoder_attention_heads": cfg.n_head,
        "encoder_ffn_dim": cfg.d_ff, "decoder_ffn_dim": cfg.d_ff,
        "activation_function": ACT_OUT[cfg.activation], "max_position_embeddings": cfg.max_seq_len,
        "scale_embedding": cfg.scale_embeddings, "dropout": cfg.dropout,
        "attention_dropout": cfg.attn_dropout, "activation_dropout": 0.0,
        "share_encoder_decoder_embeddings": bool(cfg.extra.get("share_embeddings", True)),
        "tie_word_embeddings": cfg.tie_embeddings, "pad_token_id": pad,
        "eos_token_id": cfg.eos_token_id if cfg.eos_token_id is not None else 0,
        "forced_eos_token_id": cfg.eos_token_id if cfg.eos_token_id is not None else 0,
        "bos_token_id": cfg.bos_token_id,
        "decoder_start_token_id": (cfg.decoder_start_token_id
                                   if cfg.decoder_start_token_id is not None else pad),
        "is_encoder_decoder": True, "static_position_embeddings": True,
        "normalize_before": False, "normalize_embedding": False,
    }


def export(model, out) -> Path:
    """Write `model` as a Hugging Face Marian folder (config.json + model.safetensors)."""
    cfg = model.config
    hf = config_to_hf(cfg)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sd = model.state_dict()
    tensors = {}
    share = model.tgt_embed is None
    tensors["model.shared.weight" if share else "model.encoder.embed_tokens.weight"] = \
        sd["embed.tok.weight"]
    if not share:
        tensors["model.decoder.embed_tokens.weight"] = sd["tgt_embed.tok.weight"]
    if not cfg.tie_embeddings:
        tensors["lm_head.weight"] = sd["lm_head.weight"]
    tensors["final_logits_bias"] = sd["final_logits_bias"].reshape(1, -1)
    back = {v: k for k, v in LAYER.items()}
    for stack, n in (("encoder", cfg.n_encoder_layer), ("decoder", cfg.n_layer)):
        for i in range(n):
            for ours_sub, hf_sub in back.items():
                for leaf in ("weight", "bias"):
                    k = f"{stack}.{i}.{ours_sub}.{leaf}"
                    if k in sd:
                        tensors[f"model.{stack}.layers.{i}.{hf_sub}.{leaf}"] = sd[k]
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()},
              str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
    tok = getattr(model, "tokenizer", None)
    if tok is not None:
        tok.save(out / "tokenizer.json")
    return out
