"""zeroformer checkpoints: a folder of safetensors + JSON, written atomically, never pickled.

A checkpoint folder::

    model.safetensors          the model's state_dict (tied weights stored once)
    config.json                ModelConfig.to_dict()
    tokenizer.json             the tokenizer (when the model has one)
    trainer_state.json         step, TrainConfig, loss log, python/numpy RNG states   (training)
    trainer_state.safetensors  extra tensors: torch RNG states as uint8 tensors       (training)
    optimizer.safetensors      optimizer.state_dict(): tensors flattened to
                               ``state.<param index>.<name>``; param_groups and scalar state
                               as JSON in the file's metadata                          (training)

A training run folder OUT holds ``step-00000100/`` checkpoints and ``latest.json``
(``{"step": 100, "path": "step-00000100"}``). Every write is atomic: a checkpoint is written to
a hidden temporary folder and renamed into place, then ``latest.json`` is replaced with
``os.replace``; only then are old checkpoints pruned (the newest `keep` stay). A process killed at
any moment therefore leaves ``latest.json`` pointing at a complete checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_model, save_file, save_model

from ..config import ModelConfig
from ..errors import UserError
from .loading import PICKLE_SUFFIXES, refuse_pickle

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
STATE_FILE = "trainer_state.json"
STATE_TENSORS_FILE = "trainer_state.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
LATEST_FILE = "latest.json"
_OPT_META_KEY = "zeroformer.optimizer"

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
          "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


def parse_dtype(dtype):
    """`None`, a torch.dtype, or a name ('fp32', 'bf16', 'fp16', ...) -> torch.dtype or None."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if str(dtype).lower() not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[str(dtype).lower()]


# -- small atomic-file helpers -------------------------------------------------------------------
def write_json_atomic(path, obj) -> None:
    """Write JSON to `path` via a temp file + fsync + os.replace (readers never see half a file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(json.dumps(obj, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: unreadable ({e})") from None


def open_safetensors(path):
    """safe_open(path), or a UserError naming the file when it is truncated or not safetensors.

    safetensors checks that the header is small and parses, and that its offsets cover the file
    exactly, before it maps any tensor: a truncated file never allocates or reads past its end.
    """
    try:
        return safe_open(str(path), framework="pt")
    except Exception as e:  # safetensors raises its own SafetensorError; OSError for I/O
        raise UserError(f"{path}: not a readable safetensors file, truncated or damaged "
                        f"({' '.join(str(e).split())[:200]})") from None


def _read_safetensors(path) -> dict:
    with open_safetensors(path) as f:
        return {k: f.get_tensor(k) for k in f.keys()}


# -- optimizer <-> safetensors -------------------------------------------------------------------
def optimizer_to_flat(state_dict: dict) -> tuple[dict, dict]:
    """optimizer.state_dict() -> (tensors {"state.<i>.<name>": T}, JSON-able rest)."""
    tensors, rest = {}, {"param_groups": state_dict["param_groups"], "state": {}}
    for pid, st in state_dict["state"].items():
        for name, v in st.items():
            if torch.is_tensor(v):
                tensors[f"state.{pid}.{name}"] = v.detach().cpu().contiguous()
            else:
                rest["state"].setdefault(str(pid), {})[name] = v
    return tensors, rest


def optimizer_from_flat(tensors: dict, rest: dict) -> dict:
    """Inverse of `optimizer_to_flat` (tuples such as AdamW's betas come back as tuples)."""
    state: dict = {int(pid): dict(v) for pid, v in rest["state"].items()}
    for key, t in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = t
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()}
              for g in rest["param_groups"]]
    return {"state": state, "param_groups": groups}


# -- save ----------------------------------------------------------------------------------------
def save_checkpoint(model, folder, tokenizer=None, trainer_state=None, optimizer=None,
                    extra_tensors=None) -> Path:
    """Write a checkpoint folder atomically (temp folder, then rename). Returns its path.

    `trainer_state` (a JSON-able dict) -> trainer_state.json; `extra_tensors` ({name: tensor},
    e.g. RNG states) -> trainer_state.safetensors; `optimizer` -> optimizer.safetensors.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        _write_contents(tmp, model, tokenizer, trainer_state, optimizer, extra_tensors)
        if folder.exists():  # replacing a checkpoint: move the old one aside first
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _write_contents(tmp: Path, model, tokenizer, trainer_state, optimizer, extra_tensors):
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    save_model(model, str(tmp / MODEL_FILE), metadata={"format": "pt", "producer": "zeroformer"})
    model.config.save(tmp / CONFIG_FILE)
    if tokenizer is not None:
        tokenizer.save(tmp / TOKENIZER_FILE)
    if optimizer is not None:
        tensors, rest = optimizer_to_flat(optimizer.state_dict())
        save_file(tensors, str(tmp / OPTIMIZER_FILE), metadata={_OPT_META_KEY: json.dumps(rest)})
    if extra_tensors:
        save_file({k: v.detach().cpu().contiguous() for k, v in extra_tensors.items()},
                  str(tmp / STATE_TENSORS_FILE))
    if trainer_state is not None:
        write_json_atomic(tmp / STATE_FILE, trainer_state)


# -- load ----------------------------------------------------------------------------------------
def _model_file(folder: Path) -> Path:
    f = folder / MODEL_FILE
    if not f.exists():
        pickles = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            refuse_pickle(pickles[0])
        raise UserError(f"{folder}: no {MODEL_FILE} (not a zeroformer checkpoint)")
    return f


def stored_dtype(path) -> torch.dtype | None:
    """The dtype of the first floating-point tensor in a safetensors file."""
    with open_safetensors(path) as f:
        for key in f.keys():
            dt = f.get_slice(key).get_dtype()
            name = {"F32": "fp32", "BF16": "bf16", "F16": "fp16"}.get(dt)
            if name:
                return DTYPES[name]
    return None


def load_weights(model, folder) -> None:
    """Load `folder`/model.safetensors into `model` strictly (every name, every shape)."""
    folder = Path(folder)
    open_safetensors(_model_file(folder))  # a truncated file: UserError, not SafetensorError
    try:
        load_model(model, str(_model_file(folder)), strict=True,
                   device=str(next(model.parameters()).device))
    except RuntimeError as e:
        msg = " ".join(str(e).split())[:400]
        raise UserError(f"{folder}: weights do not match config.json ({msg})") from None


def load_checkpoint(folder, dtype=None):
    """Build the model from config.json, load model.safetensors strictly; `.tokenizer` if any.

    The model comes back in eval mode, in the stored dtype unless `dtype` is given.
    """
    from ..models import build_model

    folder = Path(folder)
    if folder.is_file():
        if folder.suffix in PICKLE_SUFFIXES:
            refuse_pickle(folder)
        folder = folder.parent
    if (folder / LATEST_FILE).exists():
        folder = latest_checkpoint(folder)
    cfg = ModelConfig.load(folder / CONFIG_FILE)
    model = build_model(cfg)
    weights = _model_file(folder)
    dt = stored_dtype(weights)
    if dt is not None and dt != torch.float32:
        model.to(dt)
    load_weights(model, folder)
    dtype = parse_dtype(dtype)
    if dtype is not None:
        model.to(dtype)
    model.eval()
    tok_file = folder / TOKENIZER_FILE
    if tok_file.exists():
        try:
            from ..tokenizers import load_tokenizer
        except ImportError:  # tokenizers package not available: the model still loads
            load_tokenizer = None
        if load_tokenizer is not None:
            model.tokenizer = load_tokenizer(tok_file)
    return model


def load_optimizer(optimizer, folder) -> None:
    """Restore an optimizer's state from `folder`/optimizer.safetensors."""
    path = Path(folder) / OPTIMIZER_FILE
    if not path.exists():
        raise UserError(f"{folder}: no {OPTIMIZER_FILE}; cannot resume training from it")
    tensors = _read_safetensors(path)
    try:
        with open_safetensors(path) as f:
            rest = json.loads((f.metadata() or {})[_OPT_META_KEY])
        state = optimizer_from_flat(tensors, rest)
        optimizer.load_state_dict(state)
    except (KeyError, TypeError, ValueError) as e:  # metadata missing/damaged, or another optimizer
        raise UserError(f"{path}: not an optimizer state of this model ({type(e).__name__}: "
                        f"{' '.join(str(e).split())[:200]})") from None


def load_trainer_state(folder) -> tuple[dict, dict]:
    """(trainer_state.json as a dict, {name: tensor} from trainer_state.safetensors)."""
    folder = Path(folder)
    state = _read_json(folder / STATE_FILE) if (folder / STATE_FILE).exists() else None
    if state is None:
        raise UserError(f"{folder}: no {STATE_FILE}; cannot resume training from it")
    tpath = folder / STATE_TENSORS_FILE
    return state, (_read_safetensors(tpath) if tpath.exists() else {})


# -- training run folders: step-N checkpoints + latest.json --------------------------------------
def step_dirname(step: int) -> str:
    return f"step-{step:08d}"


def latest_checkpoint(out) -> Path | None:
    """The checkpoint folder `out`/latest.json points at, or None if there is no latest.json."""
    out = Path(out)
    if not (out / LATEST_FILE).exists():
        return None
    info = _read_json(out / LATEST_FILE)
    try:
        path = out / info["path"]
    except (KeyError, TypeError):
        raise UserError(f"{out / LATEST_FILE}: no 'path' entry") from None
    if not path.is_dir():
        raise UserError(f"{out / LATEST_FILE} points at {path}, which does not exist")
    return path


def check_resumable(folder) -> None:
    """Raise a UserError naming the first file resume needs from `folder` that is missing, not
    JSON, or not a whole safetensors file (truncated, damaged header, no optimizer metadata)."""
    folder = Path(folder)
    for name in (CONFIG_FILE, STATE_FILE, MODEL_FILE, OPTIMIZER_FILE):
        if not (folder / name).is_file():
            raise UserError(f"{folder}: no {name}")
    _read_json(folder / CONFIG_FILE)
    _read_json(folder / STATE_FILE)
    open_safetensors(folder / MODEL_FILE)
    if (folder / STATE_TENSORS_FILE).exists():
        open_safetensors(folder / STATE_TENSORS_FILE)
    with open_safetensors(folder / OPTIMIZER_FILE) as f:
        try:
            json.loads((f.metadata() or {})[_OPT_META_KEY])
        except (KeyError, ValueError):
            raise UserError(f"{folder / OPTIMIZER_FILE}: no readable optimizer metadata") from None


def resumable_checkpoint(out) -> Path | None:
    """The checkpoint to resume run folder `out` from (None when there is no latest.json).

    It is the one latest.json names; if a file in it is damaged (a disk fault, a copy cut short:
    our own writes never leave one), the newest older ``step-*`` folder that is whole, with a
    warning on stderr. Resuming from any whole checkpoint still ends bit-identical to the
    uninterrupted run; it only repeats steps. A damaged latest.json itself is an error (it is
    written atomically, so it means the folder was tampered with: we do not guess).
    """
    current = latest_checkpoint(out)
    if current is None:
        return None
    try:
        check_resumable(current)
        return current
    except UserError as e:
        damaged = e
    older = sorted((p for p in Path(out).glob("step-*") if p.is_dir() and p.name < current.name),
                   reverse=True)
    for folder in older:
        try:
            check_resumable(folder)
        except UserError:
            continue
        sys.stderr.write(f"zeroformer: warning: {damaged}; resuming from {folder.name} instead\n")
        return folder
    raise UserError(f"cannot resume: {damaged}; and {out} holds no older complete checkpoint")


def save_run_checkpoint(out, step: int, model, keep: int = 2, **kwargs) -> Path:
    """Save `out`/step-XXXXXXXX atomically, point latest.json at it, keep the newest `keep`."""
    out = Path(out)
    folder = save_checkpoint(model, out / step_dirname(step), **kwargs)
    write_json_atomic(out / LATEST_FILE, {"step": step, "path": folder.name})
    prune_checkpoints(out, keep)
    return folder


def prune_checkpoints(out, keep: int = 2) -> None:
    """Delete all but the newest `keep` step-* folders (never the one latest.json names) and
    leftovers of interrupted writes."""
    out = Path(out)
    current = latest_checkpoint(out)
    steps = sorted(p for p in out.glob("step-*") if p.is_dir())
    for p in steps[:-keep] if keep > 0 else steps:
        if current is None or p.resolve() != current.resolve():
            shutil.rmtree(p, ignore_errors=True)
    for p in out.glob(".step-*"):  # temp/old folders of a killed process
        shutil.rmtree(p, ignore_errors=True)
