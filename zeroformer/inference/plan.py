"""Which inference path a model runs: the one choice behind generate, chat, eval ppl, translate
and embed (`choose_path`), applied by `apply_plan`, described in one line by `Plan.describe`.

    choose_path(source, dtype=None, int8=False, int4=False) -> Plan

source (io/loading.py:Source) is what the weights were stored as. The rules, first match wins:
  --int8 / --int4 (they exclude each other)   those weights (nn/fast.py), whatever the source;
  --dtype fp32 | bf16                         that dtype, no quantization: `--dtype fp32` is the
                                              reference path (a GGUF dequantized to float32);
  no flag, a GGUF whose body is 4-bit         int4 groups of 32 (Q4_0, Q4_1, Q4_K, IQ4_*);
  no flag, a GGUF whose body is 5 to 8-bit    int8 rows (Q5_*, Q6_K, Q8_0);
  anything else (F32/F16/BF16 GGUF, safetensors checkpoints)   as stored, unfused: the
                                              reference path.
Quantized paths fuse q/k/v and gate/up into one matmul each and store the output layer as int4
re-scoring its top 64 logits with int8 rows (RefinedInt4Linear), as `--int4` always did. Without
torch's CPU int4 kernel the int4 choice becomes int8; without the int8 kernel, fp32.

Int4 from a GGUF: the blocks are dequantized to float32 (io/gguf_import.py) and re-quantized in
groups of 32 by Int4Linear. Q4_1 stores per block of 32 w = d q + m (fp16 d, m; q in [0, 15]);
Int4Linear stores w = (q - 8) s + z. When the block's codes span 0..15 (llama.cpp's Q4_1 sets
d = (max - min) / 15, m = min, so they do: every block of SmolLM2-135M-Instruct.Q4_1.gguf), the
group's min and max give back s = d, z = m + 8 d and the same q, so the only change is the one
the kernel needs: s and z rounded to bf16 (relative 2^-9 each; the kernel with fp16 or fp32
scales runs 25-45x slower on this CPU). tests/test_plan.py checks this against the file's blocks.
Q4_0 (w = d (q - 8)) maps the same way (z = 0). Q4_K's sub-blocks of 32 are also w = a q + b,
but their codes need not span 0..15: within int4's tolerance, not exact. Q8_0 (per block of
32, an fp16 scale) -> Int8Linear's one scale per row: re-quantized, within int8's tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import UserError

INT4_TYPES = ("Q4_0", "Q4_1", "Q4_K", "IQ4_NL", "IQ4_XS")
INT8_TYPES = ("Q5_0", "Q5_1", "Q5_K", "Q6_K", "Q8_0", "Q8_K")
DTYPE_NAMES = {"fp32": "fp32", "float32": "fp32", "bf16": "bf16", "bfloat16": "bf16"}


@dataclass(frozen=True)
class Plan:
    """weights: "fp32", "bf16", "fp16", "int8" or "int4"; dtype: the dtype to load the model in
    (None: as stored); why: "flag" (asked), "default" or a fallback note; source: io Source."""
    weights: str
    dtype: str | None
    source: object
    why: str = "default"

    @property
    def quantized(self) -> bool:
        return self.weights in ("int8", "int4")

    def describe(self, threads: int | None = None, lm_head: bool = True) -> str:
        """One line, e.g. "int4 weights (from GGUF Q4_1), int8-refined top-64 logits, fused QKV,
        bf16 activations, 1 thread". lm_head: the model has an output layer (`lm_head`; a BERT
        encoder has none, so nothing is refined)."""
        threads = torch.get_num_threads() if threads is None else threads
        src = str(self.source)
        parts = [f"{self.weights} weights (from {src})" if self.quantized
                 else f"{self.weights} weights ({src}{', dequantized' if 'GGUF Q' in src else ''})"]
        if self.weights == "int4" and lm_head:
            parts.append("int8-refined top-64 logits")
        if self.quantized:
            from ..nn import q4

            parts += ["fused QKV", "int8 activations (Q4 kernel)"
                      if self.weights == "int4" and q4.available() else "bf16 activations"]
        else:
            parts.append(f"{self.weights} compute" + (", reference path"
                                                     if self.weights == "fp32" else ""))
        if self.why not in ("default", "flag"):
            parts.append(self.why)
        return ", ".join(parts) + f", {threads} thread{'s' if threads != 1 else ''}"


def _kernels() -> tuple[bool, bool]:
    return (hasattr(torch, "_weight_int4pack_mm_for_cpu"), hasattr(torch, "_weight_int8pack_mm"))


def parse_flags(dtype=None, int8: bool = False, int4: bool = False) -> str | None:
    """The --dtype name ("fp32", "bf16" or None); UserError for a bad flag or combination."""
    if int8 and int4:
        raise UserError("--int8 and --int4 exclude each other")
    if dtype is not None and str(dtype).lower() not in DTYPE_NAMES:
        raise UserError(f"--dtype must be fp32 or bf16 (got {dtype!r})")
    return DTYPE_NAMES.get(str(dtype).lower()) if dtype is not None else None


def choose_path(source, dtype=None, int8: bool = False, int4: bool = False,
                kernels: tuple[bool, bool] | None = None) -> Plan:
    """The Plan for weights stored as `source` under the user's flags (the rules above).
    kernels: (has int4, has int8) CPU kernels; default: what this torch has."""
    has4, has8 = _kernels() if kernels is None else kernels
    name = parse_flags(dtype, int8, int4)
    if int4 or int8:
        return Plan("int4" if int4 else "int8", name, source, "flag")
    if name is not None:
        return Plan(name, name, source, "flag")
    stored = source.weights if source.format == "gguf" else None
    if stored in INT4_TYPES and has4:
        return Plan("int4", None, source)
    if stored in INT4_TYPES + INT8_TYPES and has8:
        note = "default" if stored in INT8_TYPES else "int8: this torch has no CPU int4 kernel"
        return Plan("int8", None, source, note)
    weights = "fp32" if source.format == "gguf" else source.weights
    return Plan(weights, None, source)


def apply_plan(model, plan: Plan):
    """Put `model` (loaded in plan.dtype) on the plan's path, in place: eval mode, and for a
    quantized plan fused projections and int8 / int4 linears (nn/fast.py). Returns the model."""
    if plan.quantized:
        from ..nn.fast import prepare_inference

        prepare_inference(model, fuse=True, int8=plan.weights == "int8",
                          int4=plan.weights == "int4", int4_head="refine")
    return model.eval()
