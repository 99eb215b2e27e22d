"""Hugging Face `model_type: bert` folders <-> zeroformer `Bert`: names and layouts only.

Reads `BertModel`, `BertForMaskedLM`, `BertForPreTraining`, `BertForSequenceClassification` and
`BertForTokenClassification` folders (config.json + *.safetensors), and writes them back.

| Hugging Face (after the optional `bert.` prefix)         | zeroformer                        |
|----------------------------------------------------------|-----------------------------------|
| embeddings.word_embeddings / position_ / token_type_     | embed.tok / embed.pos / embed.seg |
| embeddings.LayerNorm                                     | embed.norm                        |
| encoder.layer.i.attention.self.query / key / value       | blocks.i.self_attn.q/k/v_proj     |
| encoder.layer.i.attention.output.dense / LayerNorm       | blocks.i.self_attn.o_proj / norm_attn |
| encoder.layer.i.intermediate.dense / output.dense        | blocks.i.ffn.up / ffn.down        |
| encoder.layer.i.output.LayerNorm                         | blocks.i.norm_ffn                 |
| pooler.dense                                             | pooler                            |
| cls.predictions.transform.dense / LayerNorm, .bias       | mlm.dense / mlm.norm, mlm.bias    |
| cls.predictions.decoder.weight (tied to word_embeddings) | (embed.tok) or mlm.decoder        |
| cls.seq_relationship                                     | nsp                               |
| classifier                                               | classifier / token_classifier     |
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..config import ModelConfig
from ..errors import UserError

ACT = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu",
       "silu": "silu", "swish": "silu"}
ACT_BACK = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu"}
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json")

_LAYER = [  # (HF suffix inside encoder.layer.i., ours inside blocks.i.)
    ("attention.self.query.", "self_attn.q_proj."), ("attention.self.key.", "self_attn.k_proj."),
    ("attention.self.value.", "self_attn.v_proj."), ("attention.output.dense.", "self_attn.o_proj."),
    ("attention.output.LayerNorm.", "norm_attn."), ("intermediate.dense.", "ffn.up."),
    ("output.dense.", "ffn.down."), ("output.LayerNorm.", "norm_ffn."),
]
_TOP = [
    ("embeddings.word_embeddings.", "embed.tok."), ("embeddings.position_embeddings.", "embed.pos."),
    ("embeddings.token_type_embeddings.", "embed.seg."), ("embeddings.LayerNorm.", "embed.norm."),
    ("pooler.dense.", "pooler."), ("cls.predictions.transform.dense.", "mlm.dense."),
    ("cls.predictions.transform.LayerNorm.", "mlm.norm."), ("cls.predictions.bias", "mlm.bias"),
    ("cls.predictions.decoder.weight", "mlm.decoder.weight"), ("cls.seq_relationship.", "nsp."),
]
_IGNORED = ("embeddings.position_ids", "cls.predictions.decoder.bias")  # a buffer; tied to .bias


# ------------------------------------------------------------------------------------ config
def config_from_hf(raw: dict, heads: list[str]) -> ModelConfig:
    pet = raw.get("position_embedding_type", "absolute")
    if pet != "absolute":
        raise UserError(f"BERT position_embedding_type {pet!r} is not supported (only 'absolute')")
    act = raw.get("hidden_act", "gelu")
    if act not in ACT:
        raise UserError(f"BERT hidden_act {act!r} is not supported ({', '.join(ACT)})")
    extra: dict = {"heads": heads}
    if "classify" in heads or "tokens" in heads:
        id2label = raw.get("id2label") or {}
        n = int(raw.get("num_labels", len(id2label) or 2))
        extra["num_labels"] = n
        if id2label:
            extra["labels"] = [str(id2label.get(str(i), id2label.get(i, i))) for i in range(n)]
    try:
        return ModelConfig(
            arch="encoder", vocab_size=raw["vocab_size"], n_layer=raw["num_hidden_layers"],
            d_model=raw["hidden_size"], n_head=raw["num_attention_heads"],
            d_ff=raw["intermediate_size"], activation=ACT[act], norm="layernorm",
            norm_eps=raw.get("layer_norm_eps", 1e-12), prenorm=False, final_norm=False,
            embed_norm=True, position="learned", max_seq_len=raw.get("max_position_embeddings", 512),
            bias=True, tie_embeddings=raw.get("tie_word_embeddings", True),
            type_vocab_size=raw.get("type_vocab_size", 2),
            dropout=raw.get("hidden_dropout_prob", 0.1),
            attn_dropout=raw.get("attention_probs_dropout_prob", 0.1),
            pad_token_id=raw.get("pad_token_id", 0), extra=extra)
    except KeyError as e:
        raise UserError(f"BERT config.json lacks {e.args[0]!r}") from None


def _heads_from(names: set[str], architectures: list[str]) -> list[str]:
    heads = []
    if any(n.startswith("cls.predictions.") for n in names):
        heads.append("mlm")
    if any(n.startswith("cls.seq_relationship.") for n in names):
        heads.append("nsp")
    if any(n.startswith("pooler.") for n in names):
        heads.append("pooler")
    if any(n.startswith("classifier.") for n in names):
        tok = any("TokenClassification" in a for a in architectures)
        heads.append("tokens" if tok else "classify")
    return heads


# ------------------------------------------------------------------------------------ names
def hf_to_ours(name: str, heads: list[str]) -> str | None:
    """One HF tensor name (prefix `bert.` already removed) -> ours, None = ignore."""
    if name in _IGNORED:
        return None
    name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
    m = re.match(r"encoder\.layer\.(\d+)\.(.*)$", name)
    if m:
        for hf, ours in _LAYER:
            if m.group(2).startswith(hf):
                return f"blocks.{m.group(1)}.{ours}{m.group(2)[len(hf):]}"
        raise UserError(f"unexpected BERT tensor {name!r}")
    for hf, ours in _TOP:
        if name.startswith(hf):
            return ours + name[len(hf):]
    if name.startswith("classifier."):
        return ("token_classifier." if "tokens" in heads else "classifier.") + name[len("classifier."):]
    raise UserError(f"unexpected BERT tensor {name!r}")


def ours_to_hf(name: str, prefix: str) -> str:
    m = re.match(r"blocks\.(\d+)\.(.*)$", name)
    if m:
        for hf, ours in _LAYER:
            if m.group(2).startswith(ours):
                return f"{prefix}encoder.layer.{m.group(1)}.{hf}{m.group(2)[len(ours):]}"
    for hf, ours in _TOP:
        if name.startswith(ours):
            return ("" if hf.startswith("cls.") else prefix) + hf + name[len(ours):]
    if name.startswith("token_classifier."):
        return "classifier." + name[len("token_classifier."):]
    if name.startswith("classifier."):
        return name
    raise ValueError(f"no Hugging Face name for {name!r}")


# ------------------------------------------------------------------------------------ load
def read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for f in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(f), framework="pt") as sf:
                for k in sf.keys():
                    tensors[k] = sf.get_tensor(k)
        except Exception as e:  # a truncated or foreign file
            raise UserError(f"{f}: unreadable safetensors file ({e})") from None
    return tensors


def load(path, dtype=None):
    """A Hugging Face BERT folder -> `Bert` in eval mode (fp32 unless `dtype`), `.tokenizer` set
    when the folder has vocab.txt / tokenizer.json."""
    from ..io.checkpoint import parse_dtype
    from ..models.bert import Bert

    folder = Path(path)
    raw = json.loads((folder / "config.json").read_text())
    tensors = read_tensors(folder)
    tensors = {k[len("bert."):] if k.startswith("bert.") else k: v for k, v in tensors.items()}
    heads = _heads_from(set(tensors), list(raw.get("architectures") or []))
    cfg = config_from_hf(raw, heads)
    model = Bert(cfg)
    state = {}
    for k, v in tensors.items():
        ours = hf_to_ours(k, heads)
        if ours == "mlm.decoder.weight" and cfg.tie_embeddings:
            continue  # the tied copy of embed.tok.weight
        if ours is not None:
            state[ours] = v
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f"{folder}: weights do not match config.json (missing {missing[:5]}, "
                        f"unexpected {unexpected[:5]})")
    dt = parse_dtype(dtype)
    if dt is not None:
        model.to(dt)
    model.eval()
    model.tokenizer = _tokenizer(folder)
    model.hf_source = folder
    return model


def _tokenizer(folder: Path):
    if not any((folder / n).is_file() for n in ("tokenizer.json", "vocab.txt")):
        return None
    from ..tokenizers import load_tokenizer

    try:
        return load_tokenizer(folder)
    except ImportError:  # the WordPiece reader has not landed in this checkout
        return None


# ------------------------------------------------------------------------------------ export
def architecture(heads: list[str]) -> str:
    if "classify" in heads:
        return "BertForSequenceClassification"
    if "tokens" in heads:
        return "BertForTokenClassification"
    if "mlm" in heads and "nsp" in heads:
        return "BertForPreTraining"
    if "mlm" in heads:
        return "BertForMaskedLM"
    return "BertModel"


def config_to_hf(cfg: ModelConfig, heads: list[str]) -> dict:
    d = {
        "architectures": [architecture(heads)], "model_type": "bert",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head,
        "intermediate_size": cfg.d_ff, "hidden_act": ACT_BACK[cfg.activation],
        "hidden_dropout_prob": cfg.dropout, "attention_probs_dropout_prob": cfg.attn_dropout,
        "max_position_embeddings": cfg.max_seq_len, "type_vocab_size": cfg.type_vocab_size,
        "layer_norm_eps": cfg.norm_eps, "pad_token_id": cfg.pad_token_id or 0,
        "position_embedding_type": "absolute", "tie_word_embeddings": cfg.tie_embeddings,
        "initializer_range": 0.02,
    }
    if "classify" in heads or "tokens" in heads:
        n = int(cfg.extra.get("num_labels", 2))
        labels = list(cfg.extra.get("labels") or [f"LABEL_{i}" for i in range(n)])
        d["id2label"] = {str(i): lab for i, lab in enumerate(labels)}
        d["label2id"] = {lab: i for i, lab in enumerate(labels)}
    return d


def export(model, out) -> Path:
    """Write `model` as a Hugging Face folder (config.json + model.safetensors [+ tokenizer])."""
    from ..models.bert import bert_heads

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    heads = bert_heads(model.config)
    prefix = "" if architecture(heads) == "BertModel" else "bert."
    if architecture(heads) == "BertForMaskedLM":  # HF's MaskedLM has no pooler
        heads = [h for h in heads if h != "pooler"]
    tensors = {}
    for name, t in model.state_dict().items():
        if name.startswith("pooler.") and "pooler" not in heads:
            continue
        tensors[ours_to_hf(name, prefix)] = t.detach().cpu().contiguous()
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config_to_hf(model.config, heads), indent=2) + "\n")
    src = getattr(model, "hf_source", None)
    if src is not None:
        for n in TOKENIZER_FILES:
            if (Path(src) / n).is_file() and Path(src).resolve() != out.resolve():
                shutil.copy(Path(src) / n, out / n)
    elif getattr(model, "tokenizer", None) is not None:
        model.tokenizer.save(out / "tokenizer.json")
    return out
