"""One `ModelConfig` for every family, and named presets.

GPT-2, LLaMA, BERT, Marian and the 2017 Transformer differ only in the fields below; the models in
`zeroformer/models/` read them and never branch on a family name.

| field            | 2017 / Marian     | BERT            | GPT-2           | LLaMA / SmolLM2   |
|------------------|-------------------|-----------------|-----------------|-------------------|
| arch             | encoder_decoder   | encoder         | decoder         | decoder           |
| norm / prenorm   | layernorm / post  | layernorm / post| layernorm / pre | rmsnorm / pre     |
| position         | sinusoidal        | learned         | learned         | rope              |
| activation/gated | relu (swish) / no | gelu / no       | gelu_tanh / no  | silu / yes (SwiGLU)|
| bias             | yes               | yes             | yes             | no                |
| n_kv_head        | = n_head          | = n_head        | = n_head        | < n_head (GQA)    |
| share_embeddings | yes (src = tgt E) | -               | -               | -                 |
| heads, labels    | -                 | mlm, nsp, ...   | -               | -                 |

Only the model lives here: training inputs (data paths, the model to start from, recipe options)
are `TrainConfig` fields, saved in a run's trainer_state.json, never in config.json.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

ARCHS = ("decoder", "encoder", "encoder_decoder", "word2vec")  # word2vec: models/word2vec.py
NORMS = ("layernorm", "rmsnorm")
POSITIONS = ("learned", "sinusoidal", "rope", "none")
ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu")
LEGACY_EXTRA = ("heads", "num_labels", "labels", "share_embeddings")  # once ModelConfig.extra[...]
POSITIVE = ("vocab_size", "n_layer", "d_model", "n_head", "n_kv_head", "head_dim", "d_ff",
            "max_seq_len", "num_labels")
TOKEN_IDS = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id")


def check_field_types(obj) -> None:
    """Raise UserError unless every field of the dataclass `obj` holds a value of its annotated
    type: int (not bool), float (an int will do; finite), bool (or 0/1, made a bool), str,
    list[str], each optionally None. A config read from a file is hostile input."""
    for f in dataclasses.fields(obj):
        v, kind = getattr(obj, f.name), str(f.type)
        if v is None and "None" in kind:
            continue
        base = kind.split(" |")[0]
        if base == "bool" and type(v) is int and v in (0, 1):
            v = bool(v)
            setattr(obj, f.name, v)
        ok = {"int": type(v) is int, "bool": type(v) is bool, "str": isinstance(v, str),
              "float": type(v) in (int, float) and math.isfinite(v),
              "list[str]": isinstance(v, list) and all(isinstance(x, str) for x in v),
              "dict": isinstance(v, dict)}.get(base, True)
        if not ok:
            raise UserError(f"{obj.what} field {f.name}={v!r:.80}: expected {kind}")


class DataclassJSON:
    """to_dict / from_dict (unknown fields refused, naming them) / replace, for a config dataclass."""

    what = "config"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise UserError(f"unknown {cls.what} field(s): "
                            f"{', '.join(repr(u[:40]) for u in unknown[:5])}")
        return cls(**d)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclass
class ModelConfig(DataclassJSON):
    arch: str = "decoder"
    vocab_size: int = 256
    n_layer: int = 4               # decoder layers (or encoder layers for arch=encoder)
    n_encoder_layer: int | None = None  # encoder_decoder only; None = n_layer
    d_model: int = 128
    n_head: int = 4
    n_kv_head: int | None = None   # None = n_head (MHA); 1 = MQA; in between = GQA
    head_dim: int | None = None    # None = d_model // n_head
    d_ff: int = 512
    activation: str = "gelu"
    gated_ffn: bool = False        # True: down(act(gate(x)) * up(x)) (SwiGLU when activation=silu)
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    prenorm: bool = True           # False = post-norm (2017 paper, BERT, Marian)
    final_norm: bool = True        # a norm after the last block (pre-norm models)
    embed_norm: bool = False       # a norm right after the embeddings (BERT)
    position: str = "learned"
    sinusoidal_layout: str = "interleaved"  # "interleaved" (paper: sin, cos alternate) or "split" (Marian: all sin, then all cos)
    position_offset: int = 0       # added to position ids (e.g. Marian/BART-style offsets)
    rope_base: float = 10000.0
    max_seq_len: int = 256
    bias: bool = True
    tie_embeddings: bool = True
    scale_embeddings: bool = False  # multiply token embeddings by sqrt(d_model) (2017 paper)
    type_vocab_size: int = 0        # BERT segment embeddings (0 = none)
    dropout: float = 0.0
    attn_dropout: float = 0.0
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    decoder_start_token_id: int | None = None
    share_embeddings: bool = True   # encoder_decoder: one embedding table for source and target
    heads: list[str] | None = None  # BERT heads (models/bert.py HEADS); None = encoder + pooler
    num_labels: int = 2             # classes of BERT's "classify" / "tokens" heads
    labels: list[str] | None = None  # their names, index = class id (None: "0", "1", ...)

    def __post_init__(self):
        for name in ("heads", "labels"):  # a list; `--heads=mlm,nsp` on the command line
            v = getattr(self, name)
            if isinstance(v, str):
                setattr(self, name, [x for x in v.split(",") if x])
            elif isinstance(v, tuple):
                setattr(self, name, list(v))
        ids = {k: getattr(self, k) for k in TOKEN_IDS}  # HF configs may list several ids
        for k, v in ids.items():
            if isinstance(v, list) and all(type(x) is int for x in v):
                setattr(self, k, None)
        check_field_types(self)
        for k, v in ids.items():
            setattr(self, k, v)
        layerless = ("n_layer", "d_ff") if self.arch == "word2vec" else ()  # a table, no blocks
        for name in POSITIVE:
            if name in layerless:
                if getattr(self, name) < 0:
                    raise UserError(f"config {name}={getattr(self, name)} must be >= 0")
            elif getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserError(f"config {name}={getattr(self, name)} must be >= 1")
        if not (self.n_encoder_layer is None or self.n_encoder_layer >= 0) \
                or self.type_vocab_size < 0 or self.position_offset < 0:
            raise UserError("config n_encoder_layer, type_vocab_size and position_offset must "
                            "be >= 0")
        if not (0 <= self.dropout <= 1 and 0 <= self.attn_dropout <= 1):
            raise UserError(f"config dropout={self.dropout}, attn_dropout={self.attn_dropout}: "
                            "probabilities are between 0 and 1")
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if self.head_dim is None:
            if self.d_model % self.n_head:
                raise UserError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}")
            self.head_dim = self.d_model // self.n_head
        if self.n_encoder_layer is None:
            self.n_encoder_layer = self.n_layer
        for name, allowed in (("arch", ARCHS), ("norm", NORMS), ("position", POSITIONS),
                              ("activation", ACTIVATIONS)):
            if getattr(self, name) not in allowed:
                raise UserError(f"config {name}={getattr(self, name)!r:.80} is not one of {allowed}")
        if self.n_head % self.n_kv_head:
            raise UserError(f"n_head={self.n_head} is not a multiple of n_kv_head={self.n_kv_head}")

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """Also reads config.json files written before the typed fields: their "extra" dict's
        model keys (heads, num_labels, labels, share_embeddings) become fields; its other keys
        (training inputs such as data paths, which never belonged in a model config) are dropped
        with a warning."""
        d = dict(d)
        extra = d.pop("extra", None) or {}
        if not isinstance(extra, dict):
            raise UserError(f"config field extra: expected an object, got {extra!r}")
        dropped = sorted(k for k in extra if k not in LEGACY_EXTRA)
        if dropped:
            warnings.warn(f"config.json: ignoring the old 'extra' key(s) {', '.join(dropped)} "
                          "(not part of the model)", stacklevel=2)
        return super().from_dict({**{k: v for k, v in extra.items() if k in LEGACY_EXTRA}, **d})

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path) -> "ModelConfig":
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError
            raise UserError(f"cannot read config {path}: {e}") from None
        except RecursionError:
            raise UserError(f"cannot read config {path}: JSON nested too deeply") from None
        if not isinstance(d, dict):
            raise UserError(f"{path}: expected a JSON object of config fields")
        try:
            return cls.from_dict(d)
        except UserError as e:
            raise UserError(f"{path}: {e}") from None



_GPT2 = dict(arch="decoder", vocab_size=50257, max_seq_len=1024, position="learned",
             norm="layernorm", prenorm=True, activation="gelu_tanh", bias=True,
             tie_embeddings=True, dropout=0.1, attn_dropout=0.1, bos_token_id=50256,
             eos_token_id=50256)
_LLAMA = dict(arch="decoder", position="rope", norm="rmsnorm", prenorm=True, activation="silu",
              gated_ffn=True, bias=False, tie_embeddings=False)
_BERT = dict(arch="encoder", vocab_size=30522, max_seq_len=512, position="learned",
             norm="layernorm", norm_eps=1e-12, prenorm=False, final_norm=False, embed_norm=True,
             activation="gelu", bias=True, type_vocab_size=2, dropout=0.1, attn_dropout=0.1,
             pad_token_id=0)
_PAPER = dict(arch="encoder_decoder", position="sinusoidal", norm="layernorm", prenorm=False,
              final_norm=False, activation="relu", bias=True, scale_embeddings=True,
              tie_embeddings=True, dropout=0.1, attn_dropout=0.0)

PRESETS: dict[str, dict] = {
    "tiny": dict(arch="decoder", vocab_size=256, n_layer=2, d_model=64, n_head=4, d_ff=256,
                 max_seq_len=128),
    "gpt2": dict(_GPT2, n_layer=12, d_model=768, n_head=12, d_ff=3072),
    "gpt2-medium": dict(_GPT2, n_layer=24, d_model=1024, n_head=16, d_ff=4096),
    "llama": dict(_LLAMA, vocab_size=32000, n_layer=22, d_model=2048, n_head=32, n_kv_head=4,
                  d_ff=5632, norm_eps=1e-5, max_seq_len=2048, bos_token_id=1, eos_token_id=2),
    "smollm2-135m": dict(_LLAMA, vocab_size=49152, n_layer=30, d_model=576, n_head=9, n_kv_head=3,
                         d_ff=1536, norm_eps=1e-5, rope_base=100000.0, max_seq_len=8192,
                         tie_embeddings=True, bos_token_id=1, eos_token_id=2),
    "bert-base": dict(_BERT, n_layer=12, d_model=768, n_head=12, d_ff=3072),
    "bert-large": dict(_BERT, n_layer=24, d_model=1024, n_head=16, d_ff=4096),
    "transformer-base": dict(_PAPER, vocab_size=37000, n_layer=6, d_model=512, n_head=8, d_ff=2048,
                             max_seq_len=512),
    "transformer-small": dict(_PAPER, vocab_size=8000, n_layer=3, d_model=256, n_head=4, d_ff=1024,
                              max_seq_len=128),
}


def preset(name: str, **overrides) -> ModelConfig:
    """The named preset as a ModelConfig, with `overrides` applied."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    return ModelConfig.from_dict({**PRESETS[name], **overrides})
