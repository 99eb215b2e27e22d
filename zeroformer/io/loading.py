"""`zeroformer.load(path)`: one entry point that picks the reader from what `path` is.

- a zeroformer checkpoint folder (`config.json` with our fields + `model.safetensors`), or a
  training run folder (`latest.json` pointing at its newest `step-*` checkpoint): checkpoint.py;
- a Hugging Face folder (`config.json` with `model_type` + `*.safetensors`): the family module
  `zeroformer/io/hf_<model_type>.py` (a config translation and a name table);
- a `.gguf` file: `zeroformer/io/gguf_import.py`.

Models never know where their weights came from. Nothing here unpickles: `.bin`/`.pt`/... files
are refused by name (files.py).
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from ..errors import UserError
from . import files
from .checkpoint import CONFIG_FILE, latest_checkpoint, load_checkpoint

HF_TYPES = sorted(m.name[3:] for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                  if m.name.startswith("hf_"))  # a family = a module io/hf_<model_type>.py


def load_model(path, dtype=None):
    p = Path(path)
    if not p.exists():
        raise UserError(f"model not found: {p}")
    if p.is_file():
        if p.suffix == ".gguf":
            from .gguf_import import load

            return load(p, dtype=dtype)
        files.refuse_pickle(p)
        if p.suffix != ".safetensors":
            raise UserError(f"{p}: not a model (expected a folder, a .gguf or a .safetensors file)")
        p = p.parent
    p = latest_checkpoint(p) or p
    if not (p / CONFIG_FILE).exists():
        files.find_weights(p)  # a folder of pickles is refused by name
        raise UserError(f"{p}: no config.json (not a zeroformer or Hugging Face model folder)")
    raw = files.read_json(p / CONFIG_FILE)
    files.find_weights(p)
    if "model_type" in raw and "arch" not in raw:
        mtype = str(raw["model_type"])
        if mtype not in HF_TYPES:
            raise UserError(f"{p / CONFIG_FILE}: model_type {mtype!r} is not supported "
                            f"(supported: {', '.join(HF_TYPES)})")
        return importlib.import_module(f".hf_{mtype}", __package__).load(p, dtype=dtype)
    return load_checkpoint(p, dtype=dtype)
