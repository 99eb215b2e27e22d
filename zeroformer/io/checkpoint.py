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

An FSDP run's checkpoints hold ``shards/`` + ``sharded.json`` in place of model.safetensors and
optimizer.safetensors (zeroformer/io/sharded.py); loading one as a model assembles the shards.

A training run folder OUT holds ``step-00000100/`` checkpoints and ``latest.json``
(``{"step": 100, "path": "step-00000100"}``). Every write is atomic: a checkpoint is written to
a hidden temporary folder and renamed into place, then ``latest.json`` is replaced with
``os.replace``; only then are old checkpoints pruned (the newest `keep` stay). A process killed at
any moment therefore leaves ``latest.json`` pointing at a complete checkpoint.

Test hook (tests/test_faults.py): with ``ZEROFORMER_TEST_KILL=POINT@STEP`` in the environment the
process SIGKILLs itself at POINT of the checkpoint write for STEP, so a test can make a kill land
inside a write deterministically. POINT is one of FAULT_POINTS (`_fault_point` below, in order):
``mid-write`` (model.safetensors written into the hidden temporary folder, the rest not yet),
``before-rename`` (the temporary folder complete), ``before-latest`` (the step folder renamed into
place, latest.json still naming the previous one), ``before-prune`` (latest.json replaced, old
checkpoints not yet deleted).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path

import torch

from ..config import ModelConfig
from ..errors import UserError
from . import sharded
from .files import (all_finite, attach_tokenizer, build_checked, find_weights, load_strict, parse_dtype,
                    read_json, read_weights, refuse_pickle, safetensors_header, stored_dtype,
                    stored_sizes, untied_state, write_folder, write_json_atomic,
                    write_safetensors)

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
STATE_FILE = "trainer_state.json"
STATE_TENSORS_FILE = "trainer_state.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
LATEST_FILE = "latest.json"
_OPT_META_KEY = "zeroformer.optimizer"
FAULT_POINTS = ("mid-write", "before-rename", "before-latest", "before-prune")


def _fault_point(point: str, step) -> None:
    """The test hook of the module docstring: SIGKILL this process at `point` of step `step`."""
    if os.environ.get("ZEROFORMER_TEST_KILL") == f"{point}@{step}":
        os.kill(os.getpid(), signal.SIGKILL)


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
                    extra_tensors=None, step=None) -> Path:
    """Write a checkpoint folder atomically (temp folder, then rename). Returns its path.

    `trainer_state` (a JSON-able dict) -> trainer_state.json; `extra_tensors` ({name: tensor},
    e.g. RNG states) -> trainer_state.safetensors; `optimizer` -> optimizer.safetensors.
    `step` only names the checkpoint for the test hook (`_fault_point`).
    """
    def fill(tmp: Path):
        write_safetensors(tmp / MODEL_FILE, untied_state(model), {"producer": "zeroformer"})
        _fault_point("mid-write", step)
        if optimizer is not None:
            tensors, rest = optimizer_to_flat(optimizer.state_dict())
            write_safetensors(tmp / OPTIMIZER_FILE, tensors, {_OPT_META_KEY: json.dumps(rest)})
        _write_small_files(tmp, model, tokenizer, trainer_state, extra_tensors)
        _fault_point("before-rename", step)

    return write_folder(folder, fill)


def _write_small_files(tmp: Path, model, tokenizer=None, trainer_state=None,
                       extra_tensors=None) -> None:
    """config.json, the tokenizer, trainer_state.json/.safetensors: all but the big tensors."""
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    model.config.save(tmp / CONFIG_FILE)
    if tokenizer is not None:
        tokenizer.save(tmp / TOKENIZER_FILE)
    if extra_tensors:
        write_safetensors(tmp / STATE_TENSORS_FILE, extra_tensors)
    if trainer_state is not None:
        write_json_atomic(tmp / STATE_FILE, trainer_state)


# -- load ----------------------------------------------------------------------------------------
def load_weights(model, folder) -> None:
    """Load `folder`/model.safetensors into `model` strictly (every name, every shape)."""
    folder = Path(folder)
    if not (folder / MODEL_FILE).exists():
        find_weights(folder)  # refuses a folder of pickles by name
        raise UserError(f"{folder}: no {MODEL_FILE} (not a zeroformer checkpoint)")
    was = model.training
    load_strict(model, read_weights([folder / MODEL_FILE]), folder / MODEL_FILE).train(was)


def load_checkpoint(folder, dtype=None):
    """Build the model from config.json, load model.safetensors strictly; `.tokenizer` if any.

    `folder` may be a run folder (its latest.json is followed). The model comes back in eval
    mode, in the stored dtype unless `dtype` is given.
    """
    folder = Path(folder)
    if folder.is_file():
        refuse_pickle(folder)
        folder = folder.parent
    folder = latest_checkpoint(folder) or folder
    cfg = ModelConfig.load(folder / CONFIG_FILE)
    if sharded.is_sharded(folder):  # an FSDP run's checkpoint: assembled in this one process
        from ..models import build_model

        model = build_model(cfg)
        sharded.load_full(model, folder)
        stored = None
    else:
        if not (folder / MODEL_FILE).exists():
            find_weights(folder)  # refuses a folder of pickles by name
            raise UserError(f"{folder}: no {MODEL_FILE} (not a zeroformer checkpoint)")
        model = build_checked(cfg, *stored_sizes([folder / MODEL_FILE]), folder / CONFIG_FILE)
        load_weights(model, folder)
        stored = stored_dtype([folder / MODEL_FILE])
    model.to(parse_dtype(dtype) or stored or torch.float32)
    attach_tokenizer(model, folder, strict=True)
    return model.eval()


def load_optimizer(optimizer, folder) -> None:
    """Restore an optimizer's state from `folder`/optimizer.safetensors, checked against the
    optimizer first: every state tensor shaped like its parameter and finite, every setting of
    the type the optimizer uses (a damaged file is a UserError, not a crash at the next step)."""
    path = Path(folder) / OPTIMIZER_FILE
    if not path.exists():
        raise UserError(f"{folder}: no {OPTIMIZER_FILE}; cannot resume training from it")
    tensors = read_weights([path])
    rest = _optimizer_meta(path)
    try:
        saved = optimizer_from_flat(tensors, rest)
        params = [p for g in optimizer.param_groups for p in g["params"]]
        for pid, st in saved["state"].items():
            for name, t in st.items():
                if torch.is_tensor(t) and t.dim() and t.shape != params[pid].shape:
                    raise ValueError(f"state {pid}.{name} has shape {tuple(t.shape)}, its "
                                     f"parameter {tuple(params[pid].shape)}")
                if torch.is_tensor(t) and not (t.is_floating_point() and t.isfinite().all()):
                    raise ValueError(f"state {pid}.{name} is not finite floating point")
        now = optimizer.state_dict()["param_groups"]
        if len(saved["param_groups"]) != len(now):
            raise ValueError(f"{len(saved['param_groups'])} parameter groups, not {len(now)}")
        for old, new in zip(saved["param_groups"], now):
            if set(old) != set(new) or any(_kind(old[k]) != _kind(v) for k, v in new.items()):
                raise ValueError("the parameter groups' settings differ in names or types")
        optimizer.load_state_dict(saved)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as e:
        raise UserError(f"{path}: damaged or foreign optimizer state ({e})") from None


def _kind(v):
    """A setting's type for comparison: numbers are one kind (lr may be saved as an int)."""
    if isinstance(v, (list, tuple)):
        return ("seq", len(v), tuple(_kind(x) for x in v))
    return "number" if type(v) in (int, float) else type(v).__name__


def _optimizer_meta(path) -> dict:
    """The JSON settings stored in the optimizer file's metadata (UserError if absent)."""
    meta = safetensors_header(path).get("__metadata__", {})
    try:
        rest = json.loads(meta[_OPT_META_KEY])
    except (KeyError, TypeError, ValueError, RecursionError):
        rest = None
    if not isinstance(rest, dict):
        raise UserError(f"{path}: no readable optimizer metadata")
    return rest


def load_trainer_state(folder) -> tuple[dict, dict]:
    """(trainer_state.json as a dict, {name: tensor} from trainer_state.safetensors), checked:
    step a non-negative integer; log, unlogged, rng and train_config of their saved types."""
    folder = Path(folder)
    if not (folder / STATE_FILE).exists():
        raise UserError(f"{folder}: no {STATE_FILE}; cannot resume training from it")
    state = read_json(folder / STATE_FILE)
    types = {"step": int, "log": list, "unlogged": list, "rng": dict, "train_config": dict}
    for key, kind in types.items():
        if (key == "step" or key in state) and not isinstance(state.get(key), kind) \
                or key == "step" and (isinstance(state[key], bool) or state[key] < 0):
            raise UserError(f"{folder / STATE_FILE}: {key!r} is missing or not a "
                            f"{'non-negative integer' if kind is int else kind.__name__}")
    tpath = folder / STATE_TENSORS_FILE
    return state, (read_weights([tpath]) if tpath.exists() else {})


# -- training run folders: step-N checkpoints + latest.json --------------------------------------
def step_dirname(step: int) -> str:
    return f"step-{step:08d}"


def latest_checkpoint(out) -> Path | None:
    """The checkpoint folder `out`/latest.json points at, or None if there is no latest.json.
    The one place that follows latest.json (load, resume, viz)."""
    out = Path(out)
    if not (out / LATEST_FILE).exists():
        return None
    name = read_json(out / LATEST_FILE).get("path")
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", "..") \
            or len(name) > 255:
        raise UserError(f"{out / LATEST_FILE}: 'path' is not the name of a checkpoint folder "
                        f"in {out}: {name!r:.80}")
    path = out / name
    if not path.is_dir():
        raise UserError(f"{out / LATEST_FILE} points at {path}, which does not exist")
    return path


def check_resumable(folder) -> None:
    """Raise a UserError naming the first file resume needs from `folder` that is missing, not
    JSON, or not a whole safetensors file (truncated, damaged header, no optimizer metadata), or
    whose weights hold a NaN or an infinity."""
    folder = Path(folder)
    big = (sharded.INDEX_FILE,) if sharded.is_sharded(folder) else (MODEL_FILE, OPTIMIZER_FILE)
    for name in (CONFIG_FILE, STATE_FILE, *big):
        if not (folder / name).is_file():
            raise UserError(f"{folder}: no {name}")
    read_json(folder / CONFIG_FILE)
    load_trainer_state(folder)  # reads the JSON; trainer_state.safetensors whole, if present
    if sharded.is_sharded(folder):
        sharded.pieces(folder)
        return
    for name, t in read_weights([folder / MODEL_FILE]).items():
        if t.is_floating_point() and not all_finite(t):
            raise UserError(f"{folder / MODEL_FILE}: tensor {name} holds NaN or infinite values")
    _optimizer_meta(folder / OPTIMIZER_FILE)


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


def save_run_checkpoint(out, step: int, model, keep: int = 2, sharded_main=None,
                        **kwargs) -> Path:
    """Save `out`/step-XXXXXXXX atomically, point latest.json at it, keep the newest `keep`.

    An FSDP run: every rank calls this with `sharded_main` (True on rank 0 alone) and the
    checkpoint is sharded (io/sharded.py); it returns on every rank once latest.json names it."""
    out = Path(out)
    folder = out / step_dirname(step)
    if sharded_main is None:
        save_checkpoint(model, folder, step=step, **kwargs)
    else:
        optimizer = kwargs.pop("optimizer")
        sharded.save_sharded(folder, model, optimizer, sharded_main,
                             lambda tmp: _write_small_files(tmp, model, **kwargs))
    if sharded_main in (None, True):
        _fault_point("before-latest", step)
        write_json_atomic(out / LATEST_FILE, {"step": step, "path": folder.name})
        _fault_point("before-prune", step)
        prune_checkpoints(out, keep)
    if sharded_main is not None:
        sharded.barrier()
    return folder


def average_checkpoints(folders) -> dict:
    """The element-wise mean of the weights stored in checkpoint `folders` (Vaswani et al. 6.1:
    the base models average the last 5 checkpoints):  W = (1/N) sum_i W_i  for every tensor,
    summed in float64 in the order given and rounded once to the stored dtype. Tensors that are
    not floating point come from the last folder. All must hold the same names and shapes."""
    folders = [Path(f) for f in folders]
    if not folders:
        raise UserError("nothing to average: no checkpoints")
    total: dict = {}
    for i, folder in enumerate(folders):
        state = read_weights([folder / MODEL_FILE])
        if i and (state.keys() != total.keys() or
                  any(tuple(v.shape) != tuple(total[k].shape) for k, v in state.items())):
            raise UserError(f"cannot average {folder} with {folders[0]}: different tensors")
        for k, v in state.items():
            if not v.is_floating_point():
                total[k] = v
            else:
                total[k] = total[k] + v.double() if i else v.double()
    return {k: (total[k] / len(folders)).to(v.dtype) if v.is_floating_point() else v
            for k, v in state.items()}


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
