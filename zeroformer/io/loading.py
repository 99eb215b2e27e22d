"""`zeroformer.load(path)`: one entry point that picks the reader from what `path` is.

- a zeroformer checkpoint folder (`config.json` with our fields + `model.safetensors`), or a
  training run folder (`latest.json` pointing at its newest `step-*` checkpoint);
- a Hugging Face folder (`config.json` with `model_type` + `*.safetensors`): the importer module
  `zeroformer/io/hf_<model_type>.py` translates names and layouts;
- a `.gguf` file: `zeroformer/io/gguf_import.py`.

Models never know where their weights came from: importers only map names/layouts.
Nothing here unpickles: `.bin`/`.pt`/`.pth`/`.ckpt` files are refused.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from ..errors import UserError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def refuse_pickle(path: Path) -> None:
    raise UserError(
        f"{path}: refusing to load a pickle-based file ({path.suffix}); loading it could run code. "
        "Convert it to safetensors (e.g. with transformers' save_pretrained(safe_serialization=True))")


def load_model(path, dtype=None):
    p = Path(path)
    if not p.exists():
        raise UserError(f"model not found: {p}")
    if p.is_file():
        if p.suffix == ".gguf":
            return importlib.import_module(".gguf_import", __package__).load(p, dtype=dtype)
        if p.suffix in PICKLE_SUFFIXES:
            refuse_pickle(p)
        if p.suffix == ".safetensors":
            p = p.parent
        else:
            raise UserError(f"{p}: not a model (expected a folder, a .gguf or a .safetensors file)")
    if (p / "latest.json").exists():  # a training run folder: follow to its newest checkpoint
        try:
            p = p / json.loads((p / "latest.json").read_text())["path"]
        except (OSError, ValueError, KeyError) as e:
            raise UserError(f"{p / 'latest.json'}: unreadable ({e})") from None
    cfg_path = p / "config.json"
    if not cfg_path.exists():
        pickles = [f for f in p.iterdir() if f.suffix in PICKLE_SUFFIXES]
        if pickles:
            refuse_pickle(pickles[0])
        raise UserError(f"{p}: no config.json (not a zeroformer or Hugging Face model folder)")
    try:
        raw = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{cfg_path}: not valid JSON ({e})") from None
    if not list(p.glob("*.safetensors")):
        pickles = [f for f in p.iterdir() if f.suffix in PICKLE_SUFFIXES]
        if pickles:
            refuse_pickle(pickles[0])
        raise UserError(f"{p}: no *.safetensors weights")
    if "model_type" in raw and "arch" not in raw:
        mtype = str(raw["model_type"])
        try:
            importer = importlib.import_module(f".hf_{mtype}", __package__)
        except ModuleNotFoundError:
            raise UserError(f"{cfg_path}: model_type {mtype!r} is not supported "
                            "(supported: gpt2, llama, bert, marian)") from None
        return importer.load(p, dtype=dtype)
    from .checkpoint import load_checkpoint

    return load_checkpoint(p, dtype=dtype)
