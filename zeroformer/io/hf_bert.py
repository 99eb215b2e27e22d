"""Hugging Face `model_type: bert` folders <-> zeroformer `Bert`: config both ways and one table.

Reads `BertModel`, `BertForMaskedLM`, `BertForPreTraining`, `BertForSequenceClassification` and
`BertForTokenClassification` folders and writes them back. Which heads the model has is read
from the tensor names (cls.predictions -> mlm, cls.seq_relationship -> nsp, pooler, classifier ->
classify or, for *TokenClassification, tokens) into `ModelConfig.heads`; the labels from
id2label into `num_labels` / `labels`. The body sits under `bert.` except in a bare BertModel.
"""

from __future__ import annotations

from ..config import ModelConfig
from ..errors import UserError
from .table import ACT_IN, ACT_OUT, Family, Row, Table

LAYER = [  # (HF inside encoder.layer.i., ours inside blocks.i.)
    ("attention.self.query", "self_attn.q_proj"), ("attention.self.key", "self_attn.k_proj"),
    ("attention.self.value", "self_attn.v_proj"), ("attention.output.dense", "self_attn.o_proj"),
    ("attention.output.LayerNorm", "norm_attn"), ("intermediate.dense", "ffn.up"),
    ("output.dense", "ffn.down"), ("output.LayerNorm", "norm_ffn")]
EMBED = [("word_embeddings", "tok"), ("position_embeddings", "pos"),
         ("token_type_embeddings", "seg"), ("LayerNorm", "norm")]


def table(cfg: ModelConfig) -> Table:
    from ..models.bert import bert_heads

    heads = bert_heads(cfg)
    body = [*(Row(f"embeddings.{a}.{{w}}", f"embed.{b}.{{w}}") for a, b in EMBED),
            *(Row(f"encoder.layer.{{i}}.{a}.{{w}}", f"blocks.{{i}}.{b}.{{w}}") for a, b in LAYER),
            *([Row(None, "pooler.{w}")] if architecture(heads) == "BertForMaskedLM" else []),
            Row("pooler.dense.{w}", "pooler.{w}")]  # (HF's MaskedLM has no pooler: not written)
    top = [Row("cls.predictions.transform.dense.{w}", "mlm.dense.{w}"),
           Row("cls.predictions.transform.LayerNorm.{w}", "mlm.norm.{w}"),
           Row("cls.predictions.bias", "mlm.bias"),
           Row("cls.predictions.decoder.weight", "mlm.decoder.weight"),
           Row("cls.seq_relationship.{w}", "nsp.{w}"),
           Row("classifier.{w}", ("token_classifier" if "tokens" in heads else "classifier") + ".{w}")]
    ignore = ["bert.embeddings.position_ids", "embeddings.position_ids",
              "cls.predictions.decoder.bias"]  # a buffer; a copy of cls.predictions.bias
    if cfg.tie_embeddings:
        ignore.append(r"cls\.predictions\.decoder\.weight")  # a copy of word_embeddings
    return Table(body, top, prefix="bert.", ignore=tuple(ignore),
                 legacy={"LayerNorm.gamma": "LayerNorm.weight", "LayerNorm.beta": "LayerNorm.bias"})


def heads_from(names, architectures) -> list[str]:
    has = lambda p: any(n.startswith(p) for n in names)  # noqa: E731
    heads = [h for h, p in (("mlm", "cls.predictions."), ("nsp", "cls.seq_relationship."))
             if has(p)]
    heads += ["pooler"] if has("pooler.") or has("bert.pooler.") else []
    if has("classifier."):
        heads.append("tokens" if any("TokenClassification" in a for a in architectures)
                     else "classify")
    return heads


def config_from_hf(raw: dict, names=(), source="config.json") -> ModelConfig:
    pet = raw.get("position_embedding_type", "absolute")
    if pet != "absolute":
        raise UserError(f"{source}: BERT position_embedding_type {pet!r} is not supported")
    act = raw.get("hidden_act", "gelu")
    if act not in ACT_IN:
        raise UserError(f"{source}: BERT hidden_act {act!r} is not supported ({', '.join(ACT_IN)})")
    heads = heads_from(names, list(raw.get("architectures") or []))
    id2label = raw.get("id2label") or {}
    n = int(raw.get("num_labels", len(id2label) or 2))
    labels = [str(id2label.get(str(i), id2label.get(i, i))) for i in range(n)] if id2label else None
    try:
        return ModelConfig(
            arch="encoder", vocab_size=raw["vocab_size"], n_layer=raw["num_hidden_layers"],
            d_model=raw["hidden_size"], n_head=raw["num_attention_heads"],
            d_ff=raw["intermediate_size"], activation=ACT_IN[act], norm="layernorm",
            norm_eps=raw.get("layer_norm_eps", 1e-12), prenorm=False, final_norm=False,
            embed_norm=True, position="learned", max_seq_len=raw.get("max_position_embeddings", 512),
            bias=True, tie_embeddings=raw.get("tie_word_embeddings", True),
            type_vocab_size=raw.get("type_vocab_size", 2),
            dropout=raw.get("hidden_dropout_prob", 0.1),
            attn_dropout=raw.get("attention_probs_dropout_prob", 0.1),
            pad_token_id=raw.get("pad_token_id", 0), heads=heads,
            **({"num_labels": n, "labels": labels} if {"classify", "tokens"} & set(heads) else {}))
    except KeyError as e:
        raise UserError(f"{source}: BERT config.json lacks {e.args[0]!r}") from None


def architecture(heads) -> str:
    for need, name in ((("classify",), "BertForSequenceClassification"),
                       (("tokens",), "BertForTokenClassification"),
                       (("mlm", "nsp"), "BertForPreTraining"), (("mlm",), "BertForMaskedLM")):
        if all(h in heads for h in need):
            return name
    return "BertModel"


def config_to_hf(cfg: ModelConfig, dtype: str) -> dict:
    from ..models.bert import bert_heads

    heads = bert_heads(cfg)
    d = {
        "architectures": [architecture(heads)], "model_type": "bert",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head,
        "intermediate_size": cfg.d_ff, "hidden_act": ACT_OUT[cfg.activation],
        "hidden_dropout_prob": cfg.dropout, "attention_probs_dropout_prob": cfg.attn_dropout,
        "max_position_embeddings": cfg.max_seq_len, "type_vocab_size": cfg.type_vocab_size,
        "layer_norm_eps": cfg.norm_eps, "pad_token_id": cfg.pad_token_id or 0,
        "position_embedding_type": "absolute", "tie_word_embeddings": cfg.tie_embeddings,
        "initializer_range": 0.02, "dtype": dtype,
    }
    if "classify" in heads or "tokens" in heads:
        labels = list(cfg.labels or [f"LABEL_{i}" for i in range(cfg.num_labels)])
        d["id2label"] = {str(i): lab for i, lab in enumerate(labels)}
        d["label2id"] = {lab: i for i, lab in enumerate(labels)}
    return d


FAMILY = Family(config_from_hf, config_to_hf, table,
                bare=lambda hf: hf["architectures"] == ["BertModel"])
load, export = FAMILY.load, FAMILY.export
