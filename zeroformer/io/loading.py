"""`zeroformer.load(path)`: one entry point that picks the reader from what `path` is.

- a zeroformer checkpoint folder (`config.json` with our fields + `model.safetensors`), or a
  training run folder (`latest.json` pointing at its newest `step-*` checkpoint): checkpoint.py;
- a Hugging Face folder (`config.json` with `model_type` + `*.safetensors`): the family module
  `zeroformer/io/hf_<model_type>.py` (a config translation and a name table);
- a `.gguf` file: `zeroformer/io/gguf_import.py`.

`load_with_source` also says what the weights were stored as (a `Source`: GGUF Q4_1, safetensors
fp32, ...), which the inference layer's path choice reads (inference/plan.py). Models never know
where their weights came from. Nothing here unpickles: `.bin`/`.pt`/... files
are refused by name (files.py).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import UserError
from . import files, sharded
from .checkpoint import CONFIG_FILE, latest_checkpoint, load_checkpoint

HF_TYPES = sorted(m.name[3:] for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                  if m.name.startswith("hf_"))  # a family = a module io/hf_<model_type>.py


@dataclass(frozen=True)
class Source:
    """What a model's weights were stored as. format: "gguf" or "safetensors"; weights: the GGUF
    body's quantization name ("Q4_1", "Q8_0", "F32", ...) or the safetensors dtype ("fp32",
    "bf16", "fp16")."""
    format: str
    weights: str

    def __str__(self) -> str:
        return f"{'GGUF' if self.format == 'gguf' else self.format} {self.weights}"


_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def load_model(path, dtype=None):
    return load_with_source(path, dtype)[0]


def load_with_source(path, dtype=None):
    """(model, Source) for `path` (the forms in this module's docstring)."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"model not found: {p}")
    if p.is_file():
        if p.suffix == ".gguf":
            from .gguf_import import read

            model, qtype = read(p, dtype=dtype)
            return model, Source("gguf", qtype)
        files.refuse_pickle(p)
        if p.suffix != ".safetensors":
            raise UserError(f"{p}: not a model (expected a folder, a .gguf or a .safetensors file)")
        p = p.parent
    p = latest_checkpoint(p) or p
    if not (p / CONFIG_FILE).exists():
        files.find_weights(p)  # a folder of pickles is refused by name
        raise UserError(f"{p}: no config.json (not a zeroformer or Hugging Face model folder)")
    raw = files.read_json(p / CONFIG_FILE)
    if sharded.is_sharded(p):  # an FSDP run's checkpoint (fp32 shards)
        return load_checkpoint(p, dtype=dtype), Source("safetensors", "fp32")
    source = Source("safetensors", _NAMES.get(files.stored_dtype(files.find_weights(p)), "fp32"))
    if "model_type" in raw and "arch" not in raw:
        mtype = str(raw["model_type"])
        if mtype not in HF_TYPES:
            raise UserError(f"{p / CONFIG_FILE}: model_type {mtype!r} is not supported "
                            f"(supported: {', '.join(HF_TYPES)})")
        return importlib.import_module(f".hf_{mtype}", __package__).load(p, dtype=dtype), source
    return load_checkpoint(p, dtype=dtype), source
