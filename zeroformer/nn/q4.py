"""Q4Linear: 4-bit weights times 8-bit activations, in zeroformer's own small C kernel.

Weights in blocks of 32 inputs, the GGUF Q4_1 form (fp16 d, m per block; q in 0..15):
    w[n, 32b + j] = d[n, b] q[n, 32b + j] + m[n, b]
Activations quantized per block of 32 on the fly:  x ~= e a,  e = max|x_block| / 127, a int8.
    y[r, n] = sum_b d e (sum_j q a) + m e (sum_j a)            (q4_kernel.c)

Why a kernel of ours: torch's CPU int4 kernel (`_weight_int4pack_mm_for_cpu`, used by Int4Linear
in nn/fast.py) reaches about 4 GB/s of weights on this Zen 4 core at batch 1; multiplying 4-bit
codes by int8 activations with AVX-512 VNNI (64 products per instruction, the scheme llama.cpp
uses) needs no dequantization to bf16 and runs several times faster. The C file is compiled once
per machine with the system C compiler (`cc -O3 -march=native -fopenmp`) into
$ZEROFORMER_HOME/kernels/ and loaded with ctypes; without a compiler `available()` is False and
the int4 path stays on torch's kernel (nn/fast.py). Inference only, CPU only, float32 in and out.

Several rows at once (batched decoding, short prompts) run on AMX int8 tiles where the CPU has
them (one tile product gives 16 weight rows x up to 16 rows' exact integer block sums), one row on
VNNI. Each block's integer sum is exact on every path and the float part (scale, then add, block
by block) is one code sequence, so a row's output is bit-equal whichever path and however many
rows run with it (pack_q4: weight rows in groups of 16, the layout both instruction sets read).

The reference is the fp32 model on the dequantized weights (tests/test_q4.py): the activation
rounding adds a relative error of about 1/254 per block, as in llama.cpp's Q4_1 x Q8_1.
With GEMM_ROWS rows or more (reading a prompt) the layer instead multiplies bf16 activations by
the weights dequantized to bf16 (one matrix product beats many matrix-vector products there).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import tempfile
import threading
from pathlib import Path

import torch
from torch import nn

_SOURCES = [Path(__file__).with_name(f) for f in ("q4_kernel.c", "q4_step.c")]
GEMM_ROWS = 32   # from this many rows on (a prompt), bf16 GEMM on dequantized weights: at 200
                 # rows x 576 x 3072, 9.8 ms as 200 matrix-vector products, ~2 ms this way
_lib = None
_lib_error: str | None = None
_lock = threading.Lock()


def _cache_dir() -> Path:
    root = os.environ.get("ZEROFORMER_HOME") or os.path.join(os.path.expanduser("~"), ".cache",
                                                             "zeroformer")
    return Path(root) / "kernels"


def _cpu_key() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return flags


def _build() -> ctypes.CDLL:
    """Compile q4_kernel.c and q4_step.c for this CPU (once; cached by source and CPU flags) and
    load them."""
    src = b"".join(f.read_bytes() for f in _SOURCES)
    cc = os.environ.get("CC", "cc")
    flags = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c11"]
    key = hashlib.sha256(src + " ".join([cc] + flags).encode() + _cpu_key().encode()).hexdigest()
    out = _cache_dir() / f"q4_{key[:16]}.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            tmp_so = Path(tmp) / "q4.so"
            subprocess.run([cc, *flags, *map(str, _SOURCES), "-o", str(tmp_so), "-lm"], check=True,
                           capture_output=True, timeout=300)
            os.replace(tmp_so, out)                    # atomic: a reader never sees half a file
    lib = ctypes.CDLL(str(out))
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.zf_q4_matmul.argtypes = [p, i64, i64, p, p, i64, p, p, ctypes.c_int]
    lib.zf_q4_matmul.restype = None
    lib.zf_q4_has_vnni.restype = ctypes.c_int
    lib.zf_q4_dequant_bf16.argtypes = [p, p, i64, i64, p, ctypes.c_int]
    lib.zf_topk.argtypes = [p, i64, i64, ctypes.c_int, p]
    lib.zf_topk.restype = None
    lib.zf_q4_has_amx.restype = ctypes.c_int
    lib.zf_q4_set_path.argtypes = [ctypes.c_int]
    lib.zf_q4_set_path.restype = None
    lib.zf_q4_dequant_bf16.restype = None
    lib.zf_llama_step.argtypes = [p, ctypes.c_int, p, i64, i64, i64, i64, i64, p, i64, i64,
                                  p, p, ctypes.c_float, p, p, ctypes.c_int]
    lib.zf_llama_step.restype = None
    lib.zf_attend_rows.argtypes = [p, p, p, p, i64, p, i64, i64, i64, i64, i64, i64, p,
                                   ctypes.c_int]
    lib.zf_attend_rows.restype = None
    return lib


def available() -> bool:
    """True when the kernel is compiled and loaded here, with its AVX-512 VNNI path (without
    VNNI the portable loop is slower than torch's int4 kernel, so it is not offered). Set
    ZEROFORMER_Q4_KERNEL=0 to turn it off."""
    global _lib, _lib_error
    if os.environ.get("ZEROFORMER_Q4_KERNEL", "1") == "0":
        return False
    with _lock:
        if _lib is None and _lib_error is None:
            try:
                _lib = _build()
            except (OSError, subprocess.SubprocessError) as e:
                _lib_error = f"{type(e).__name__}: {e}"
    return _lib is not None and bool(_lib.zf_q4_has_vnni())


def pack_q4(q: torch.Tensor) -> torch.Tensor:
    """q (N, K) codes 0..15 -> (ceil(N/16), K/32, 256) uint8 in the kernel's layout (q4_kernel.c):
    rows in groups of 16 (padded with zero rows), per group and block 256 bytes, byte
    64 i + 4 n + t = q[16 G + n, 32 b + 8 i + t] | q[16 G + n, 32 b + 8 i + 4 + t] << 4."""
    n, k = q.shape
    g = -(-n // 16)
    qp = torch.zeros(16 * g, k, dtype=torch.uint8)
    qp[:n] = q.to(torch.uint8)
    qv = qp.view(g, 16, k // 32, 4, 2, 4).permute(0, 2, 3, 4, 1, 5)   # (G, b, i, half, n, t)
    return (qv[:, :, :, 0] | (qv[:, :, :, 1] << 4)).reshape(g, k // 32, 256).contiguous()


def unpack_q4(packed: torch.Tensor, n: int) -> torch.Tensor:
    """pack_q4's inverse -> (N, K) codes."""
    g, nb = packed.shape[:2]
    p = packed.view(g, nb, 4, 16, 4)                                    # (G, b, i, n, t)
    codes = torch.stack([p & 15, p >> 4], 3)                            # (G, b, i, half, n, t)
    return codes.permute(0, 4, 1, 2, 3, 5).reshape(16 * g, nb * 32)[:n]


def pack_scales(d: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """d, m (N, K/32) -> (ceil(N/16), K/32, 32) fp16: per group of 16 rows and block, the 16 rows'
    d then their 16 m (zero for padding rows)."""
    n, nb = d.shape
    g = -(-n // 16)
    out = torch.zeros(g * 16, nb, 2, dtype=torch.float16)
    out[:n, :, 0], out[:n, :, 1] = d, m
    return out.view(g, 16, nb, 2).permute(0, 2, 3, 1).reshape(g, nb, 32).contiguous()


def topk_indices(y: torch.Tensor, k: int) -> torch.Tensor:
    """(..., V) -> (..., k) int64: the indices of the k largest values of each row, in no particular
    order (q4_step.c:zf_topk, a heap: ~5x torch.topk on 49k logits; a value equal to the k-th
    largest enters only before it). torch.topk where the kernel is not here or y is not CPU fp32."""
    if (k > 256 or y.dtype != torch.float32 or y.device.type != "cpu" or y.size(-1) < k
            or not available()):
        return y.topk(k, dim=-1).indices
    y2 = y.reshape(-1, y.size(-1)).contiguous()
    idx = torch.empty(y2.size(0), k, dtype=torch.int64)
    _lib.zf_topk(y2.data_ptr(), y2.size(0), y2.size(1), k, idx.data_ptr())
    return idx.view(*y.shape[:-1], k)


def attend_rows(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, anc: torch.Tensor, t: int,
                keep: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q K^T / sqrt(d)) V for one new position per row, where row r's keys and values at
    position j sit in cache row anc[r, j] (beam search without moving the cache: nn/kv_cache.py).

    q: (R, h, 1, d) fp32; k, v: (N, h_kv, T_max, d) contiguous fp32; anc: (>= R, >= t) int32,
    contiguous rows; keep: (R, t) bool or None -> (R, h, 1, d). q4_step.c:zf_attend_rows (the
    caller checks `available()`)."""
    r, h, _, d = q.shape
    q = q.contiguous()
    out = torch.empty_like(q)
    if keep is not None:
        keep = keep.to(torch.uint8).contiguous()
    _lib.zf_attend_rows(q.data_ptr(), k.data_ptr(), v.data_ptr(), anc.data_ptr(), anc.stride(0),
                        None if keep is None else keep.data_ptr(), r, h, k.size(1), k.size(2), t,
                        d, out.data_ptr(), torch.get_num_threads())
    return out


def set_path(path: int | None) -> None:
    """The kernel path for several rows: 0 portable C, 1 AVX-512 VNNI, 2 (or None) AMX where the
    CPU has it. The same numbers on every path (tests/test_q4.py); for tests and benchmarks."""
    if available():
        _lib.zf_q4_set_path(2 if path is None else path)


class Q4Linear(nn.Module):
    """nn.Linear(in, out) as blocks of 32 four-bit codes with fp16 (d, m) per block, run by the C
    kernel. From a float Linear (round to the group's own min/max, like Int4Linear) or from
    codes and scales directly (`from_blocks`, e.g. a GGUF Q4_1 tensor: no re-rounding)."""

    def __init__(self, q: torch.Tensor, d: torch.Tensor, m: torch.Tensor, bias=None):
        super().__init__()
        n, k = q.shape
        if k % 32:
            raise ValueError(f"Q4Linear needs in_features % 32 == 0 (got {k})")
        if not available():
            raise RuntimeError(f"the Q4 kernel is not available here ({_lib_error or 'no AVX-512 VNNI'})")
        self.register_buffer("weight_q4", pack_q4(q))
        self.register_buffer("scales", pack_scales(d.to(torch.float16), m.to(torch.float16)))
        self.bias = None if bias is None else nn.Parameter(bias.detach().float().clone(),
                                                           requires_grad=False)
        self.in_features, self.out_features = k, n

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Q4Linear":
        n, k = linear.weight.shape
        w = linear.weight.detach().float().view(n, k // 32, 32)
        lo, hi = w.amin(-1), w.amax(-1)
        d = ((hi - lo) / 15).to(torch.float16).float()
        inv = torch.where(d > 0, 1 / d, torch.zeros_like(d))
        m = lo.to(torch.float16).float()
        q = torch.round((w - m[..., None]) * inv[..., None]).clamp(0, 15).view(n, k)
        return cls(q, d, m, linear.bias)

    def _scale(self, i: int) -> torch.Tensor:
        g, nb = self.scales.shape[:2]
        return (self.scales.view(g, nb, 2, 16)[:, :, i].permute(0, 2, 1)
                .reshape(16 * g, nb)[:self.out_features])

    d = property(lambda self: self._scale(0), doc="(out, in / 32) fp16 block scales d")
    m = property(lambda self: self._scale(1), doc="(out, in / 32) fp16 block minima m")

    def dequantized(self) -> torch.Tensor:
        """The float32 weight (out, in) these codes stand for: d q + m."""
        n, k = self.out_features, self.in_features
        q = unpack_q4(self.weight_q4, n).view(n, k // 32, 32).float()
        return (q * self.d.float()[..., None] + self.m.float()[..., None]).view(n, k)

    def bf16_weight(self) -> torch.Tensor:
        """d q + m as a bf16 (out, in) matrix (q4_kernel.c:zf_q4_dequant_bf16)."""
        w = torch.empty(self.out_features, self.in_features, dtype=torch.bfloat16)
        _lib.zf_q4_dequant_bf16(self.weight_q4.data_ptr(), self.scales.data_ptr(),
                                self.out_features, self.in_features, w.data_ptr(),
                                torch.get_num_threads())
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead, k = x.shape[:-1], self.in_features
        x2 = x.reshape(-1, k).float().contiguous()
        r, n = x2.size(0), self.out_features
        if r >= GEMM_ROWS:   # a prompt: one bf16 matrix product on the dequantized weights
            y = (x2.to(torch.bfloat16) @ self.bf16_weight().t()).float()
        else:
            y = torch.empty(r, n)
            work = torch.empty(r * (k + 8 * (k // 32)), dtype=torch.uint8)
            _lib.zf_q4_matmul(x2.data_ptr(), r, k, self.weight_q4.data_ptr(),
                              self.scales.data_ptr(), n, y.data_ptr(), work.data_ptr(),
                              torch.get_num_threads())
        y = y.to(x.dtype).view(*lead, n)
        return y if self.bias is None else y + self.bias.to(x.dtype)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, bias={self.bias is not None}"


# ------------------------------------------------------------------ the fused decoding step
class _Q4(ctypes.Structure):
    _fields_ = [("q", ctypes.c_void_p), ("sc", ctypes.c_void_p), ("n", ctypes.c_int64),
                ("k", ctypes.c_int64)]


class _Layer(ctypes.Structure):
    _fields_ = [("norm_attn", ctypes.c_void_p), ("norm_ffn", ctypes.c_void_p), ("qkv", _Q4),
                ("o", _Q4), ("gate_up", _Q4), ("down", _Q4), ("k_cache", ctypes.c_void_p),
                ("v_cache", ctypes.c_void_p)]


def _q4(layer: Q4Linear) -> _Q4:
    return _Q4(layer.weight_q4.data_ptr(), layer.scales.data_ptr(),
               layer.out_features, layer.in_features)


class LlamaStep:
    """One decoding step (batch 1, one new token) of a LLaMA-style Decoder whose projections are
    all Q4Linear, in one call of q4_step.c:zf_llama_step: per layer
        h += o(Attn(rope(q), rope(k), v))   with q, k, v = qkv(RMSNorm(h)), K/V appended to the cache
        h += down(silu(gate) * up)          with gate, up = gate_up(RMSNorm(h))
    then the final RMSNorm. The same equations as nn/blocks.py on the Q4 path, without a Python
    operation per tensor; `LlamaStep.build(model)` returns None for any model it does not fit
    (then the module path runs). The output layer and sampling stay in Python. It holds raw
    pointers into the model's buffers: inference only, and a copy of the model builds its own."""

    def __init__(self, model):
        cfg = model.config
        self.cfg, self.blocks, self.rope = cfg, model.blocks, model.rope
        self.final = model.norm.weight
        self.layers = (_Layer * cfg.n_layer)()
        for i, b in enumerate(model.blocks):
            a, f = b.self_attn, b.ffn
            self.layers[i] = _Layer(b.norm_attn.weight.data_ptr(), b.norm_ffn.weight.data_ptr(),
                                    _q4(a.qkv), _q4(a.o_proj), _q4(f.gate_up), _q4(f.down), 0, 0)
        self.cache_ptrs = None
        hq = cfg.n_head * cfg.head_dim
        k_max = max(cfg.d_model, cfg.d_ff, hq)
        self.scratch_floats = (max(cfg.d_model, cfg.d_ff) + 2 * hq + 2 * cfg.n_kv_head * cfg.head_dim
                               + 2 * cfg.d_ff + cfg.d_model + k_max // 4 + 2 * (k_max // 32) + 16)
        # (per row; + n_head * max_len attention scores once)
        self.scratch = None

    @staticmethod
    def build(model) -> "LlamaStep | None":
        from .norms import RMSNorm

        cfg = getattr(model, "config", None)
        if (cfg is None or cfg.arch != "decoder" or cfg.position != "rope" or cfg.norm != "rmsnorm"
                or not cfg.prenorm or not cfg.final_norm or cfg.embed_norm or not cfg.gated_ffn
                or cfg.activation != "silu" or cfg.bias or cfg.head_dim % 2 or cfg.scale_embeddings
                or cfg.type_vocab_size or model.training or not available()):
            return None
        for b in model.blocks:
            a, f = b.self_attn, b.ffn
            if not all(isinstance(x, Q4Linear) and x.bias is None
                       for x in (a.qkv, a.o_proj, getattr(f, "gate_up", None), f.down)):
                return None
            if not all(isinstance(n, RMSNorm) and n.weight.dtype == torch.float32
                       for n in (b.norm_attn, b.norm_ffn)):
                return None
        if not (isinstance(model.norm, RMSNorm) and model.norm.weight.dtype == torch.float32
                and model.rope.cos.dtype == torch.float32 and model.rope.cos.is_contiguous()):
            return None
        return LlamaStep(model)

    def __deepcopy__(self, memo):
        return False      # raw pointers into the old model: a copy builds its own (decoder.py)

    def fits(self, input_ids, attention_mask, position_ids, cache) -> bool:
        """This call is one new token per row over a float32 cache, each row at one position the
        rotary table covers: a KVCache without padding (every row at the cache's length), or a
        slot cache in decode mode (row r in slot r at positions[r], batching.py; its mask says
        only that and is not needed). Anything else runs the module path."""
        from .kv_cache import KVCache, SlotKVCache

        if cache is None or input_ids.dim() != 2 or input_ids.size(1) != 1 \
                or input_ids.device.type != "cpu":
            return False
        kv, r = cache[0].self_kv, input_ids.size(0)
        if kv.k.dtype != torch.float32 or not kv.k.is_contiguous():
            return False
        limit = min(kv.k.size(2), self.rope.cos.size(0))
        if type(kv) is KVCache:
            return (attention_mask is None and position_ids is None and kv.k.size(0) == r
                    and kv.anc is None and kv.length < limit)
        if type(kv) is SlotKVCache:
            s = kv.slots
            return (s.slot is None and s.positions is not None and s.positions.numel() == r
                    and position_ids is not None and s.width <= limit)
        return False

    def __call__(self, h: torch.Tensor, cache, position: int) -> torch.Tensor:
        """h: (R, 1, d) fp32 embedded tokens -> (R, 1, d) after the final norm; each row's new
        key/value written at its position (KVCache: `position` = its length, which grows by
        one; slot cache: slots.positions)."""
        cfg = self.cfg
        kv = [layer.self_kv for layer in cache]
        r, max_len = h.size(0), kv[0].k.size(2)
        ptrs = [(c.k.data_ptr(), c.v.data_ptr()) for c in kv]
        if self.cache_ptrs != ptrs:                 # another cache: point every layer at it
            for i, (k, v) in enumerate(ptrs):
                self.layers[i].k_cache, self.layers[i].v_cache = k, v
            self.cache_ptrs = ptrs
        slots = getattr(kv[0], "slots", None)
        if slots is None:
            positions = torch.full((r,), position, dtype=torch.int64)
        else:
            positions = slots.positions.to(torch.int64).contiguous()
        need = r * self.scratch_floats + cfg.n_head * max_len
        if self.scratch is None or self.scratch.numel() < need:
            self.scratch = torch.empty(need)
        out = h.reshape(r, -1).float().clone()
        _lib.zf_llama_step(self.layers, cfg.n_layer, out.data_ptr(), r, cfg.d_model, cfg.n_head,
                           cfg.n_kv_head, cfg.head_dim, positions.data_ptr(), max_len,
                           kv[0].k[0].numel(), self.rope.cos.data_ptr(),
                           self.rope.sin.data_ptr(), ctypes.c_float(cfg.norm_eps),
                           self.final.data_ptr(), self.scratch.data_ptr(),
                           torch.get_num_threads())
        if slots is None:
            for c in kv:
                c.length = position + 1
        return out.view(r, 1, -1).to(h.dtype)
