"""Shared plumbing for the Hugging Face importers/exporters (`hf_<model_type>.py`).

An importer is three small pieces: read `config.json` into a `ModelConfig`, rename (and where needed
transpose) the tensors of `*.safetensors` into our module tree, and attach the tokenizer. An exporter
is the inverse. This module holds the parts that do not depend on the family:

- `read_config(folder)`, `read_weights(folder)`: config.json and every safetensors shard (never a
  pickle);
- `load_state(model, state, source)`: load a renamed state dict strictly, naming any missing or
  unexpected tensor in a `UserError`;
- `attach_tokenizer(model, folder)`: `model.tokenizer` from the folder's tokenizer files, if any;
- `write_folder(out, config, state, tokenizer)`: config.json + model.safetensors (+ tokenizer).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import UserError


def read_config(folder) -> dict:
    path = Path(folder) / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: unreadable ({e})") from None


def read_weights(folder) -> dict[str, torch.Tensor]:
    """All tensors of `folder/*.safetensors` (one file or shards), by their stored names."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise UserError(f"{folder}: no *.safetensors weights")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            state.update(load_file(str(f)))
        except Exception as e:  # safetensors raises its own error types for corrupt files
            raise UserError(f"{f}: not a readable safetensors file ({e})") from None
    return state


def strip_prefix(state: dict, prefixes) -> dict:
    """Drop the first of `prefixes` that every name of `state` carries (e.g. 'transformer.')."""
    for p in prefixes:
        if any(k.startswith(p) for k in state):
            return {(k[len(p):] if k.startswith(p) else k): v for k, v in state.items()}
    return state


def load_state(model, state: dict, source, dtype=None):
    """Load `state` (our names) into `model` strictly; return the model in eval mode.

    Tied weights (lm_head.weight = embed.tok.weight) need only one of the two names in `state`.
    """
    ours = model.state_dict()
    tied = {"lm_head.weight"} if model.lm_head.weight is model.embed.tok.weight else set()
    missing = [k for k in ours if k not in state and k not in tied]
    unexpected = [k for k in state if k not in ours]
    if missing or unexpected:
        raise UserError(f"{source}: weights do not match the config: missing {missing[:5]}, "
                        f"unexpected {unexpected[:5]}")
    for k, v in state.items():
        if tuple(v.shape) != tuple(ours[k].shape):
            raise UserError(f"{source}: tensor {k} has shape {tuple(v.shape)}, "
                            f"expected {tuple(ours[k].shape)}")
    model.load_state_dict(state, strict=False)
    if dtype is not None:
        from .checkpoint import parse_dtype

        model.to(parse_dtype(dtype))
    return model.eval()


def attach_tokenizer(model, folder) -> None:
    """Set `model.tokenizer` from tokenizer.json / vocab.json+merges.txt / vocab.txt when present."""
    folder = Path(folder)
    names = ("tokenizer.json", "vocab.json", "encoder.json", "vocab.txt")
    if not any((folder / n).is_file() for n in names):
        return
    try:
        from ..tokenizers import load_tokenizer

        model.tokenizer = load_tokenizer(folder)
    except (ImportError, UserError):  # a tokenizer we cannot read does not block the weights
        pass


def write_folder(out, config: dict, state: dict, tokenizer=None) -> Path:
    """Write an HF folder: config.json, model.safetensors (contiguous, unshared tensors)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().clone() for k, v in state.items()}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if tokenizer is not None and hasattr(tokenizer, "save"):
        tokenizer.save(out / "tokenizer.json")
    return out


def torch_dtype_name(model) -> str:
    return str(next(model.parameters()).dtype).replace("torch.", "")
