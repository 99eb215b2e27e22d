"""Sharded checkpoints of FSDP runs: torch.distributed.checkpoint (DCP) over safetensors, no pickle.

A sharded checkpoint folder (OUT/step-XXXXXXXX, beside the same latest.json as checkpoint.py)::

    shards/shard-0000K-model-00001-of-00001.safetensors   rank K-1's pieces of every tensor
    sharded.json        {"format", "world_size", "files", "shapes", "param_groups"}: the index
    config.json, tokenizer.json, trainer_state.json, trainer_state.safetensors   (checkpoint.py)

What is saved is one flat {name: tensor} dict (`flat_state`), from DCP's `get_state_dict`:
    model.<name>                              a parameter; each rank writes its rows of it
    optim.<name>.<exp_avg|exp_avg_sq|step>    AdamW's state, by parameter name
Tied weights are written once (their first name). AdamW's param_groups (numbers, the same on every
rank) go to sharded.json as JSON.

No pickle. DCP's default `FileSystemWriter` stores its index (`.metadata`) as a Python pickle and
`FileSystemReader.read_metadata` reads it back with a bare `pickle.load` (torch 2.13,
torch/distributed/checkpoint/filesystem.py); non-tensor entries are read with
`torch.load(weights_only=False)`. Loading a hostile checkpoint that way runs its code. A restricted
Unpickler allowing only DCP's metadata classes would still parse pickle and track DCP's private
classes across versions, so we use DCP's own safetensors storage instead:
`HuggingFaceStorageWriter(save_distributed=True)` writes one safetensors file per rank and records
where each piece sits in the whole tensor (`saved_offsets`) as JSON in the file's header;
`HuggingFaceStorageReader` rebuilds DCP's plan from those headers. Nothing is pickled, written or
read; DCP still plans who reads which bytes, so a checkpoint of N processes resumes on any M.

Checks before a byte of data is trusted (`pieces`): every file's header (files.safetensors_header);
the files sharded.json names, no fewer; the tensors it lists, no other; for each, the pieces tile
the whole shape it records exactly (each inside it, no two overlapping, their sizes summing to
its size: a lost rank file is caught, not left as uninitialised rows); shape and dtype are the
ones the model expects; after loading, every value
finite (agreed over ranks, so all of them raise together).

Atomic, like checkpoint.py: rank 0 makes the hidden folder .step-N.tmp; every rank writes its
file there (dcp.save returns on every rank once all have written); rank 0 writes the JSON files,
renames the folder into place, replaces latest.json and prunes; a barrier ends the save.
"""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path

import torch
import torch.distributed as dist

from ..errors import UserError
from .files import (move_folder_into_place, read_json, safetensors_header, tied_aliases,
                    write_json_atomic)

SHARDS_DIR = "shards"
INDEX_FILE = "sharded.json"
FORMAT = "zeroformer-dcp-safetensors-1"
_INFO_KEY = "DCP_SHARDING_INFO"  # torch/distributed/checkpoint/_hf_utils.py: CUSTOM_METADATA_KEY


def is_sharded(folder) -> bool:
    return (Path(folder) / INDEX_FILE).is_file()


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t


# -- the flat state --------------------------------------------------------------------------------
def flat_state(model, optimizer=None) -> tuple[dict, dict, dict]:
    """({"model.<name>" / "optim.<name>.<key>": tensor}, model state dict, optimizer state dict)
    from DCP's get_state_dict (FSDP: DTensors of this rank's rows; else plain tensors)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict

    if optimizer is None:
        msd, osd = get_model_state_dict(model), None
    else:
        msd, osd = get_state_dict(model, optimizer)
    aliases = tied_aliases(model)
    flat = {f"model.{k}": v for k, v in msd.items() if k not in aliases}
    for name, st in (osd or {}).get("state", {}).items():
        for key, v in st.items():
            if not torch.is_tensor(v):
                raise UserError(f"optimizer state {name}.{key} is not a tensor; cannot shard it")
            flat[f"optim.{name}.{key}"] = v
    return flat, msd, osd


# -- checks ----------------------------------------------------------------------------------------
def pieces(folder) -> dict[str, tuple[str, tuple, list]]:
    """{name: (dtype, whole shape, [(offsets, shape)])} from the shard files' headers, checked
    (the module docstring); a UserError names the file or tensor otherwise."""
    folder = Path(folder)
    index = read_json(folder / INDEX_FILE)
    index = index if isinstance(index, dict) else {}
    names = index.get("files")
    if index.get("format") != FORMAT or not isinstance(names, list) or not names \
            or not all(isinstance(n, str) and n == Path(n).name for n in names):
        raise UserError(f"{folder / INDEX_FILE}: not a zeroformer sharded checkpoint index")
    table: dict[str, list] = {}
    for name in names:
        path = folder / SHARDS_DIR / name
        if not path.is_file():
            raise UserError(f"{folder}: shard {name} is missing")
        header = safetensors_header(path)
        try:
            where = json.loads(header.get("__metadata__", {})[_INFO_KEY])
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{path}: no readable {_INFO_KEY} in its metadata") from None
        for key, info in header.items():
            if key == "__metadata__":
                continue
            offsets = (where.get(key) or {}).get("saved_offsets") if isinstance(where, dict) else None
            if not isinstance(offsets, list) or len(offsets) != len(info["shape"]) \
                    or not all(isinstance(o, int) and o >= 0 for o in offsets):
                raise UserError(f"{path}: tensor {key!r} has no valid saved_offsets")
            table.setdefault(key, []).append((info["dtype"], tuple(offsets), tuple(info["shape"])))
    shapes = index.get("shapes")
    if not isinstance(shapes, dict) or set(shapes) != set(table):
        raise UserError(f"{folder}: the shards do not hold the tensors {INDEX_FILE} lists "
                        "(a shard file lost or damaged)")
    out = {}
    for key, parts in table.items():
        if len({d for d, _, _ in parts}) != 1:
            raise UserError(f"{folder}: the pieces of {key!r} have different dtypes")
        unique = sorted({(o, s) for _, o, s in parts})  # a replicated tensor may come twice
        whole = tuple(shapes[key]) if isinstance(shapes[key], list) else ()
        inside = all(len(o) == len(whole) and all(0 <= o[i] and o[i] + s[i] <= whole[i]
                                                  for i in range(len(whole))) for o, s in unique)
        overlap = any(all(a[0][i] < b[0][i] + b[1][i] and b[0][i] < a[0][i] + a[1][i]
                          for i in range(len(whole)))
                      for j, a in enumerate(unique) for b in unique[j + 1:]
                      if math.prod(a[1]) and math.prod(b[1]))
        if not inside or overlap or sum(math.prod(s) for _, s in unique) != math.prod(whole):
            raise UserError(f"{folder}: the pieces of {key!r} do not tile a {list(whole)} tensor "
                            "(a shard file lost or damaged)")
        out[key] = (parts[0][0], whole, unique)
    return out


_DTYPE_NAMES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16",
                torch.float64: "F64", torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8"}


def _check_against(folder, table: dict, flat: dict) -> None:
    for key, t in flat.items():
        if key not in table:
            raise UserError(f"{folder}: the sharded checkpoint has no tensor {key!r}")
        dtype, whole, _ = table[key]
        if whole != tuple(t.shape) or dtype != _DTYPE_NAMES.get(t.dtype):
            raise UserError(f"{folder}: tensor {key!r} is {dtype} {list(whole)}, expected "
                            f"{_DTYPE_NAMES.get(t.dtype, t.dtype)} {list(t.shape)}")


def _check_finite(folder, flat: dict, distributed: bool) -> None:
    bad = [k for k, v in flat.items() if v.is_floating_point() and not
           bool(torch.isfinite(_local(v)).all())]
    device = _local(next(iter(flat.values()))).device if flat else "cpu"  # nccl: on the GPU
    count = torch.tensor([float(len(bad))], dtype=torch.float64, device=device)
    if distributed:
        dist.all_reduce(count)  # every rank raises, or none does
    if count.item():
        raise UserError(f"{folder}: non-finite values in the sharded checkpoint "
                        f"({', '.join(bad[:3]) or 'on another rank'})")


def _dcp_load(folder, flat: dict, distributed: bool) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.hf_storage import HuggingFaceStorageReader

    folder = Path(folder)
    _check_against(folder, pieces(folder), flat)
    try:
        with warnings.catch_warnings():  # "assuming the intent is to load in a single process"
            warnings.simplefilter("ignore", UserWarning)
            dcp.load(flat, storage_reader=HuggingFaceStorageReader(str(folder / SHARDS_DIR)),
                     no_dist=not distributed)
    except Exception as e:  # DCP gathers every rank's failure into one CheckpointException
        raise UserError(f"{folder}: cannot read the sharded checkpoint ({str(e)[:300]})") from None
    _check_finite(folder, flat, distributed)


# -- load ------------------------------------------------------------------------------------------
def load_sharded(model, optimizer, folder) -> None:
    """Every rank: fill the FSDP `model` and its `optimizer` from `folder` (a collective)."""
    from torch.distributed.checkpoint.state_dict import set_state_dict

    flat, msd, osd = flat_state(model, optimizer)
    _dcp_load(folder, flat, distributed=True)
    for alias, name in tied_aliases(model).items():
        msd[alias] = msd[name]
    groups = read_json(Path(folder) / INDEX_FILE).get("param_groups")
    if not isinstance(groups, list) or len(groups) != len(osd["param_groups"]):
        raise UserError(f"{folder / INDEX_FILE}: no optimizer param_groups for this model")
    osd["param_groups"] = [{k: tuple(v) if k == "betas" else v for k, v in g.items()}
                           for g in groups]
    set_state_dict(model, optimizer, model_state_dict=msd, optim_state_dict=osd)


def load_full(model, folder) -> None:
    """One process, no process group: fill an ordinary (unsharded) `model` from the shards of
    `folder`; DCP assembles each tensor from its pieces (`zeroformer convert`, `load`)."""
    flat = {f"model.{k}": v for k, v in model.state_dict().items()
            if k not in tied_aliases(model)}
    _dcp_load(folder, flat, distributed=False)  # in place: state_dict() shares the parameters


def barrier() -> None:
    dist.barrier()


# -- save ------------------------------------------------------------------------------------------
def save_sharded(folder, model, optimizer, main: bool, write_rest) -> Path:
    """Every rank (a collective): write checkpoint `folder` atomically. Rank 0 (`main`) calls
    `write_rest(tmp)` for the JSON and small files before the rename."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.hf_storage import HuggingFaceStorageWriter

    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / SHARDS_DIR).mkdir(parents=True)
    dist.barrier()  # the folder exists, empty, before any rank writes into it
    flat, _, osd = flat_state(model, optimizer)
    dcp.save(flat, storage_writer=HuggingFaceStorageWriter(str(tmp / SHARDS_DIR),
                                                           save_distributed=True))
    if main:
        files = sorted(p.name for p in (tmp / SHARDS_DIR).glob("*.safetensors"))
        groups = [{k: v for k, v in g.items()} for g in osd["param_groups"]]
        write_rest(tmp)
        write_json_atomic(tmp / INDEX_FILE, {
            "format": FORMAT, "world_size": dist.get_world_size(), "files": files,
            "shapes": {k: list(v.shape) for k, v in flat.items()}, "param_groups": groups})
        move_folder_into_place(tmp, folder)  # (the same step may be saved again at a resumed run's end)
    return folder
