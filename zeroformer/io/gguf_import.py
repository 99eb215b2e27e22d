"""`.gguf` files (llama.cpp's format) of the llama architecture -> our Decoder, with its tokenizer.

A GGUF file is metadata (key/value pairs: shapes, RoPE base, tokenizer, chat template) plus tensors,
usually quantized in blocks (e.g. Q4_1: 32 weights share a float scale d and minimum m, each weight
is 4 bits q, w = d*q + m). We dequantize every tensor to float32 with `gguf.quants.dequantize`
(numpy, no llama.cpp needed), then rename:

| GGUF name                         | ours (block i = blocks.i)          |
|-----------------------------------|------------------------------------|
| token_embd                        | embed.tok                          |
| blk.i.attn_norm / ffn_norm        | norm_attn / norm_ffn               |
| blk.i.attn_q, attn_k, attn_v      | self_attn.q_proj, k_proj, v_proj   |
| blk.i.attn_output                 | self_attn.o_proj                   |
| blk.i.ffn_gate, ffn_up, ffn_down  | ffn.gate, ffn.up, ffn.down         |
| output_norm, output (if untied)   | norm, lm_head                      |

RoPE layout: llama.cpp rotates adjacent pairs (2i, 2i+1); Hugging Face and `nn/positions.py` rotate
(i, i + d/2). The converter that wrote the file permuted the rows of W_q and W_k within each head,
    rows (h, 2, d/2) -> (h, d/2, 2),
so `unpermute_rope` applies the inverse, (h, d/2, 2) -> (h, 2, d/2), to get our layout back.
GGUF lists a tensor's dimensions innermost first: [in, out] is our (out, in) nn.Linear weight.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..config import ModelConfig
from ..errors import UserError

ARCHITECTURES = ("llama",)
_LAYER = {"attn_norm": "norm_attn", "ffn_norm": "norm_ffn", "attn_q": "self_attn.q_proj",
          "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
          "attn_output": "self_attn.o_proj", "ffn_gate": "ffn.gate", "ffn_up": "ffn.up",
          "ffn_down": "ffn.down"}


def unpermute_rope(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Undo llama.cpp's Q/K row permutation. w: (n_head * head_dim, d_in) -> same shape."""
    out, d_in = w.shape
    half = out // n_head // 2
    return w.reshape(n_head, half, 2, d_in).transpose(1, 2).reshape(out, d_in)


def permute_rope(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """The converter's permutation (our layout -> GGUF's), the inverse of `unpermute_rope`."""
    out, d_in = w.shape
    half = out // n_head // 2
    return w.reshape(n_head, 2, half, d_in).transpose(1, 2).reshape(out, d_in)


def open_reader(path: Path):
    try:
        from gguf import GGUFReader
    except ImportError:  # pragma: no cover
        raise UserError("reading .gguf files needs the `gguf` package: pip install gguf") from None
    try:
        return GGUFReader(str(path), "r")
    except (ValueError, IndexError, KeyError, OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a readable GGUF file (truncated or foreign?): {e}") from None


def config_from_metadata(md: dict, source) -> ModelConfig:
    arch = md.get("general.architecture")
    if arch not in ARCHITECTURES:
        raise UserError(f"{source}: GGUF architecture {arch!r} is not supported "
                        f"(supported: {', '.join(ARCHITECTURES)})")

    def get(key, default=None):
        v = md.get(f"{arch}.{key}", default)
        if v is None:
            raise UserError(f"{source}: GGUF metadata {arch}.{key} is missing")
        return v

    scaling = md.get(f"{arch}.rope.scaling.type", "none")
    if scaling not in ("none", None):
        raise UserError(f"{source}: RoPE scaling {scaling!r} is not supported")
    d, h = int(get("embedding_length")), int(get("attention.head_count"))
    head_dim = int(md.get(f"{arch}.attention.key_length") or md.get(f"{arch}.rope.dimension_count")
                   or d // h)
    tokens = md.get("tokenizer.ggml.tokens")
    vocab = int(md.get(f"{arch}.vocab_size") or (len(tokens) if tokens else 0))
    return ModelConfig(
        arch="decoder", vocab_size=vocab, n_layer=int(get("block_count")), d_model=d, n_head=h,
        n_kv_head=int(md.get(f"{arch}.attention.head_count_kv") or h), head_dim=head_dim,
        d_ff=int(get("feed_forward_length")), activation="silu", gated_ffn=True, norm="rmsnorm",
        norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-5)), prenorm=True,
        position="rope", rope_base=float(md.get(f"{arch}.rope.freq_base", 10000.0)),
        max_seq_len=int(get("context_length", 2048)), bias=False, tie_embeddings=True,
        dropout=0.0, attn_dropout=0.0, bos_token_id=md.get("tokenizer.ggml.bos_token_id"),
        eos_token_id=md.get("tokenizer.ggml.eos_token_id"),
        pad_token_id=md.get("tokenizer.ggml.padding_token_id"))


def dequantize(t, source) -> torch.Tensor:
    """One GGUF tensor -> float32 torch tensor in our (out, in) layout."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize as gguf_dequantize

    qtype = GGMLQuantizationType(t.tensor_type)
    try:
        arr = gguf_dequantize(np.asarray(t.data), qtype)
    except NotImplementedError:
        raise UserError(f"{source}: tensor {t.name} uses quantization {qtype.name}, which the "
                        "gguf package cannot dequantize") from None
    shape = tuple(int(n) for n in reversed(t.shape))   # GGUF lists dimensions innermost first
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    return torch.from_numpy(arr if arr.flags.writeable else arr.copy()).reshape(shape)


def state_from_gguf(reader, cfg: ModelConfig, source) -> tuple[dict, bool]:
    """Dequantized, renamed tensors; returns (state, has_untied_output)."""
    state, untied = {}, False
    for t in reader.tensors:
        parts = t.name.split(".")
        if t.name == "token_embd.weight":
            name = "embed.tok.weight"
        elif t.name == "output_norm.weight":
            name = "norm.weight"
        elif t.name == "output.weight":
            name, untied = "lm_head.weight", True
        elif parts[0] == "blk" and len(parts) == 4 and parts[2] in _LAYER:
            name = f"blocks.{parts[1]}.{_LAYER[parts[2]]}.{parts[3]}"
        elif t.name == "rope_freqs.weight":
            raise UserError(f"{source}: per-dimension RoPE frequencies (rope_freqs) are not supported")
        else:
            raise UserError(f"{source}: unexpected GGUF tensor {t.name!r}")
        w = dequantize(t, source)
        if parts[-2:-1] == ["attn_q"]:
            w = unpermute_rope(w, cfg.n_head)
        elif parts[-2:-1] == ["attn_k"]:
            w = unpermute_rope(w, cfg.n_kv_head)
        state[name] = w
    return state, untied


def load(path, dtype=None):
    """A llama-architecture `.gguf` -> Decoder in float32 (or `dtype`), with `.tokenizer`."""
    from ..models.decoder import Decoder
    from ..tokenizers.gguf_vocab import load_gguf_tokenizer
    from . import hf_common

    path = Path(path)
    reader = open_reader(path)
    md = {k: f.contents() for k, f in reader.fields.items()}
    cfg = config_from_metadata(md, path)
    state, untied = state_from_gguf(reader, cfg, path)
    if untied:
        cfg = cfg.replace(tie_embeddings=False)
    model = hf_common.load_state(Decoder(cfg), state, path, dtype)
    if "tokenizer.ggml.tokens" in md:
        model.tokenizer = load_gguf_tokenizer(path, metadata=md)
    return model
