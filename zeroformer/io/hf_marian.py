"""Hugging Face Marian (`model_type: marian`, the opus-mt translators) <-> our EncoderDecoder.

Marian *is* the 2017 Transformer, post-norm, with these choices (config.json -> ModelConfig):

| Marian config                         | ModelConfig                                            |
|---------------------------------------|--------------------------------------------------------|
| encoder_layers / decoder_layers       | n_encoder_layer / n_layer                              |
| d_model, *_attention_heads, *_ffn_dim | d_model, n_head, d_ff (encoder and decoder equal)      |
| activation_function (swish = SiLU)    | activation                                             |
| scale_embedding                       | scale_embeddings (x sqrt(d_model))                     |
| max_position_embeddings               | max_seq_len; fixed sinusoidal table, "split" layout    |
| share_encoder_decoder_embeddings      | share_embeddings                                       |
| tie_word_embeddings                   | tie_embeddings (lm_head = decoder embedding)           |
| pad_token_id (= decoder_start_token_id) | pad_token_id, decoder_start_token_id                 |
| final_logits_bias (1, V) buffer       | final_logits_bias (V,) buffer                          |
| LayerNorm eps (torch default 1e-5)    | norm_eps 1e-5, prenorm False, no final norm            |

The folder's tokenizer: a `tokenizer.json` of ours, else opus-mt's source.spm + target.spm +
vocab.json (tokenizers/marian.py:MarianTokenizer, equal to transformers' MarianTokenizer).
"""

from __future__ import annotations

from ..config import ModelConfig
from ..errors import UserError
from .table import ACT_IN, ACT_OUT, Family, Row, Table, Transform

ACT_OUT = {**ACT_OUT, "silu": "swish"}
LAYER = [  # (Marian inside model.{encoder,decoder}.layers.i., ours inside {encoder,decoder}.i.)
    *((f"{a}.{p}_proj", f"{b}.{p}_proj") for a, b in (("self_attn", "self_attn"),
                                                     ("encoder_attn", "cross_attn")) for p in "qkv"),
    ("self_attn.out_proj", "self_attn.o_proj"), ("self_attn_layer_norm", "norm_attn"),
    ("encoder_attn.out_proj", "cross_attn.o_proj"), ("encoder_attn_layer_norm", "norm_cross"),
    ("fc1", "ffn.up"), ("fc2", "ffn.down"), ("final_layer_norm", "norm_ffn")]
ROW_VECTOR = Transform(lambda t, cfg: t.reshape(-1), lambda t, cfg: t.reshape(1, -1))


def table(cfg: ModelConfig) -> Table:
    """Shared embeddings: one table of ours, written as model.shared (its copies are read too)."""
    share = cfg.share_embeddings
    src = [Row("shared.weight", "embed.tok.weight"),
           Row("encoder.embed_tokens.weight", "embed.tok.weight")][::1 if share else -1]
    tgt = "embed.tok.weight" if share else "tgt_embed.tok.weight"
    return Table(prefix="model.", ignore=(r"model\.(en|de)coder\.embed_positions\.weight",), body=[
        *src,
        Row("decoder.embed_tokens.weight", tgt),
        *(Row(f"{{s}}.layers.{{i}}.{a}.{{w}}", f"{{s}}.{{i}}.{b}.{{w}}") for a, b in LAYER),
    ], top=[Row("lm_head.weight", "lm_head.weight"),
            Row("final_logits_bias", "final_logits_bias", ROW_VECTOR)])


def config_from_hf(hf: dict, names=(), where="config.json") -> ModelConfig:
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
        share_embeddings=bool(hf.get("share_encoder_decoder_embeddings", True)))


def config_to_hf(cfg: ModelConfig, dtype: str) -> dict:
    if cfg.arch != "encoder_decoder" or cfg.prenorm or cfg.final_norm or cfg.norm != "layernorm" \
            or cfg.position != "sinusoidal" or cfg.gated_ffn or not cfg.bias \
            or cfg.n_kv_head != cfg.n_head or cfg.activation not in ACT_OUT:
        raise UserError("only post-norm encoder-decoders with sinusoidal positions, biases and a "
                        "plain MLP can be exported as Marian")
    if cfg.sinusoidal_layout != "split":
        raise UserError("Marian uses the 'split' sinusoidal layout (all sines, then all cosines); "
                        "this model was trained with 'interleaved' and cannot be exported as Marian")
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else 0
    eos = cfg.eos_token_id if cfg.eos_token_id is not None else 0
    return {
        "architectures": ["MarianMTModel"], "model_type": "marian", "vocab_size": cfg.vocab_size,
        "decoder_vocab_size": cfg.vocab_size, "d_model": cfg.d_model,
        "encoder_layers": cfg.n_encoder_layer, "decoder_layers": cfg.n_layer,
        "encoder_attention_heads": cfg.n_head, "decoder_attention_heads": cfg.n_head,
        "encoder_ffn_dim": cfg.d_ff, "decoder_ffn_dim": cfg.d_ff,
        "activation_function": ACT_OUT[cfg.activation], "max_position_embeddings": cfg.max_seq_len,
        "scale_embedding": cfg.scale_embeddings, "dropout": cfg.dropout,
        "attention_dropout": cfg.attn_dropout, "activation_dropout": 0.0,
        "share_encoder_decoder_embeddings": cfg.share_embeddings,
        "tie_word_embeddings": cfg.tie_embeddings, "pad_token_id": pad, "eos_token_id": eos,
        "forced_eos_token_id": eos, "bos_token_id": cfg.bos_token_id,
        "decoder_start_token_id": (cfg.decoder_start_token_id
                                   if cfg.decoder_start_token_id is not None else pad),
        "is_encoder_decoder": True, "static_position_embeddings": True,
        "normalize_before": False, "normalize_embedding": False, "dtype": dtype,
    }


FAMILY = Family(config_from_hf, config_to_hf, table)
load, export = FAMILY.load, FAMILY.export
