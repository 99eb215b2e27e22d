"""`.gguf` files (llama.cpp's format) of the llama architecture -> our Decoder, with its tokenizer.

A GGUF file is metadata (key/value pairs: shapes, RoPE base, tokenizer, chat template) plus tensors,
usually quantized in blocks (e.g. Q4_1: 32 weights share a float scale d and minimum m, each weight
is 4 bits q, w = d*q + m). We dequantize every tensor to float32 with `gguf.quants.dequantize`
(numpy, no llama.cpp needed), then rename with the table below. GGUF lists a tensor's dimensions
innermost first: [in, out] is our (out, in) nn.Linear weight.

RoPE layout: llama.cpp rotates adjacent pairs (2i, 2i+1); Hugging Face and `nn/positions.py` rotate
(i, i + d/2). The converter that wrote the file permuted the rows of W_q and W_k within each head,
    rows (h, 2, d/2) -> (h, d/2, 2),
so `unpermute_rope` applies the inverse, (h, d/2, 2) -> (h, 2, d/2), to get our layout back.
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import ModelConfig
from ..errors import UserError
from ..tokenizers import FILE_ERRORS
from ..tokenizers.gguf_vocab import load_gguf_tokenizer, open_gguf
from . import files
from .table import Row, Table, Transform

ARCHITECTURES = ("llama",)


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


ROPE_Q = Transform(lambda w, cfg: unpermute_rope(w, cfg.n_head),
                   lambda w, cfg: permute_rope(w, cfg.n_head))
ROPE_K = Transform(lambda w, cfg: unpermute_rope(w, cfg.n_kv_head),
                   lambda w, cfg: permute_rope(w, cfg.n_kv_head))
TABLE = Table(body=[
    Row("token_embd.weight", "embed.tok.weight"),
    Row("blk.{i}.attn_norm.weight", "blocks.{i}.norm_attn.weight"),
    Row("blk.{i}.attn_q.weight", "blocks.{i}.self_attn.q_proj.weight", ROPE_Q),
    Row("blk.{i}.attn_k.weight", "blocks.{i}.self_attn.k_proj.weight", ROPE_K),
    Row("blk.{i}.attn_v.weight", "blocks.{i}.self_attn.v_proj.weight"),
    Row("blk.{i}.attn_output.weight", "blocks.{i}.self_attn.o_proj.weight"),
    Row("blk.{i}.ffn_norm.weight", "blocks.{i}.norm_ffn.weight"),
    *(Row(f"blk.{{i}}.ffn_{p}.weight", f"blocks.{{i}}.ffn.{p}.weight") for p in ("gate", "up", "down")),
    Row("output_norm.weight", "norm.weight"),
    Row("output.weight", "lm_head.weight"),   # absent when tied to token_embd
])


def config_from_metadata(md: dict, names, source) -> ModelConfig:
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
    if "rope_freqs.weight" in names:
        raise UserError(f"{source}: per-dimension RoPE frequencies (rope_freqs) are not supported")
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
        max_seq_len=int(get("context_length", 2048)), bias=False,
        tie_embeddings="output.weight" not in names, dropout=0.0, attn_dropout=0.0,
        bos_token_id=md.get("tokenizer.ggml.bos_token_id"),
        eos_token_id=md.get("tokenizer.ggml.eos_token_id"),
        pad_token_id=md.get("tokenizer.ggml.padding_token_id"))


def dequantize(t, source) -> torch.Tensor:
    """One GGUF tensor -> float32 torch tensor in our (out, in) layout."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize as gguf_dequantize

    qtype = GGMLQuantizationType(t.tensor_type)
    try:
        arr = gguf_dequantize(np.asarray(t.data), qtype)
        shape = tuple(int(n) for n in reversed(t.shape))  # GGUF lists dimensions innermost first
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        return torch.from_numpy(arr if arr.flags.writeable else arr.copy()).reshape(shape)
    except NotImplementedError:
        raise UserError(f"{source}: tensor {t.name} uses quantization {qtype.name}, which the "
                        "gguf package cannot dequantize") from None
    except (ValueError, RuntimeError, TypeError) as e:  # data that does not fit its shape
        raise UserError(f"{source}: tensor {t.name} is damaged ({e})") from None


def body_qtype(reader) -> str:
    """The quantization of the file's transformer body: the most common type among the weight
    matrices of its blocks (`blk.*`, 2-D), e.g. "Q4_1" for a llama.cpp Q4_1 file (whose token
    embedding may be Q8_0 and norms F32)."""
    from collections import Counter

    from gguf import GGMLQuantizationType

    kinds = Counter(GGMLQuantizationType(t.tensor_type).name for t in reader.tensors
                    if t.name.startswith("blk.") and len(t.shape) == 2)
    return kinds.most_common(1)[0][0] if kinds else "F32"


def read(path, dtype=None):
    """(Decoder, body quantization name) of a llama-architecture `.gguf` (see `load`)."""
    reader, md = open_gguf(path)
    try:
        cfg = config_from_metadata(md, {t.name for t in reader.tensors}, path)
    except UserError as e:
        raise UserError(str(e) if str(path) in str(e) else f"{path}: {e}") from None
    except (TypeError, ValueError, ZeroDivisionError, OverflowError) as e:
        raise UserError(f"{path}: GGUF metadata of the wrong type or range ({e})") from None
    model = files.build_checked(cfg, sum(int(t.n_elements) for t in reader.tensors),
                                sum(int(t.n_elements) > 0 for t in reader.tensors), path)
    theirs = {t.name: dequantize(t, path) for t in reader.tensors}
    model = files.load_strict(model, TABLE.to_ours(theirs, cfg, path), path, dtype)
    if "tokenizer.ggml.tokens" in md:
        try:
            model.tokenizer = load_gguf_tokenizer(path, metadata=md)
        except FILE_ERRORS as e:
            raise UserError(f"{path}: not a valid GGUF tokenizer ({type(e).__name__}: {e})") \
                from None
    return model, body_qtype(reader)


def load(path, dtype=None):
    """A llama-architecture `.gguf` -> Decoder in float32 (or `dtype`), with `.tokenizer`."""
    return read(path, dtype)[0]
