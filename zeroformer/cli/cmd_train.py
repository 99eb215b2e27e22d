"""`zeroformer train RECIPE --out DIR [--max-steps N | --time-budget 25m] [--save-every N]
[--average-last N] [--seed S] [--resume] [--key=value ...]`: train a recipe (zeroformer/recipes),
checkpointing into DIR.

--time-budget DURATION (25m, 90s, 1h30m, or seconds) trains for that long instead of
--max-steps: the step count and warmup are planned from a measured step time, and the final
evaluation runs after it (zeroformer/train/budget.py). --average-last N averages the last N
checkpoints' weights at the end into DIR/averaged and evaluates that model.
Your own parallel corpus: `zeroformer train translate --data train.tsv [--eval-data valid.tsv]
[--test-data test.tsv] --out DIR` (zeroformer/recipes/translate.py).

--key=value overrides any ModelConfig or TrainConfig field by name, converted to the field's type
(e.g. --n_layer=2 --batch_size=8 --lr=3e-4 --dtype=bf16 --dropout=0.0; dashes work too:
--batch-size=8). `zeroformer train --list` lists the recipes.

--dtype=auto (the default) trains under bf16 autocast on a GPU that supports it and, for models
with d_model >= 512, on a CPU with native bf16 (avx512_bf16 or amx_bf16 in /proc/cpuinfo); in fp32
elsewhere (narrow models train faster in fp32 on a CPU); the run prints its choice
(`dtype: ...`) and saves it, and --resume continues in the saved dtype. --dtype=fp32 forces fp32.

Data parallel: `torchrun --standalone --nproc_per_node N -m zeroformer train RECIPE ...` trains on
N processes (DDP; docs/distributed.md); `zeroformer train --nproc N RECIPE ...` launches exactly
that. batch_size is the global batch on any number of processes. --fsdp shards the weights,
gradients and optimizer state over the processes (FSDP2) and saves sharded checkpoints;
`zeroformer convert RUN OUT` turns one into an ordinary checkpoint folder.

Before anything is built, the memory the run needs per process is estimated (train/memory.py)
and compared with what the machine has free; a run that would not fit stops with one line
(--memory_check=false skips the check).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import types
import typing

from ..errors import UserError

# flags whose value goes to TrainConfig.extra, for the recipes whose `inputs` name them
FILE_FLAGS = {
    "test-data": "test data (translate)",
    "data-target": "target side of a two-file --data (translate)",
    "eval-data-target": "target side of a two-file --eval-data (translate)",
    "test-data-target": "target side of a two-file --test-data (translate)",
    "src-col": "TSV source column: 0-based index or header name (translate; default 0)",
    "tgt-col": "TSV target column: 0-based index or header name (translate; default 1)",
    "tokenizer": "use this tokenizer instead of training one (translate) or the model's (finetune)",
}

CHECKED_ENV = "ZEROFORMER_MEMORY_CHECKED"  # set by --nproc's launcher for the ranks it starts


def register(subparsers):
    # unknown `--key=value` words are kept in args.overrides (cli.ArgumentParser)
    p = subparsers.add_parser("train", help="train a recipe (zeroformer train --list)",
                              description=__doc__, allow_abbrev=False, extra_args_dest="overrides",
                              epilog="Any other --key=value sets a model or training field.")
    p.add_argument("recipe", nargs="?", metavar="RECIPE", help="recipe name (see --list)")
    p.add_argument("--out", metavar="DIR", help="run folder: step-N checkpoints + latest.json")
    p.add_argument("--max-steps", type=int, metavar="N", help="optimizer steps (max_steps)")
    p.add_argument("--time-budget", metavar="DURATION",
                   help="train for this long (25m, 90s, 1h30m), then evaluate; replaces "
                        "--max-steps (time_budget)")
    p.add_argument("--average-last", type=int, metavar="N",
                   help="at the end, average the last N checkpoints into OUT/averaged")
    p.add_argument("--save-every", type=int, metavar="N", help="checkpoint every N steps")
    p.add_argument("--seed", type=int, metavar="S", help="random seed (model init, data, dropout)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.add_argument("--data", metavar="FILE", help="training data (classify, finetune)")
    p.add_argument("--eval-data", metavar="FILE", help="held-out data (default: part of --data)")
    p.add_argument("--model", metavar="PATH", help="start from this model (classify, finetune)")
    for flag, what in FILE_FLAGS.items():
        p.add_argument(f"--{flag}", metavar="COL" if flag.endswith("col") else "FILE", help=what)
    p.add_argument("--nproc", type=int, metavar="N",
                   help="train on N processes on this machine (launches torchrun; DDP)")
    p.add_argument("--fsdp", action="store_true",
                   help="shard weights, gradients and optimizer state over the processes (FSDP2)")
    p.add_argument("--list", action="store_true", help="list the recipes and exit")
    p.set_defaults(func=run, overrides=[])


def convert(key: str, text: str, typ):
    """Convert `text` to the annotated dataclass field type `typ` (int, float, bool, str,
    X | None, dict); raise UserError naming the flag on failure."""
    args = typing.get_args(typ)
    if typing.get_origin(typ) in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null"):
            return None
        typ = next(a for a in args if a is not type(None))
    try:
        if typ is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            return int(text)
        if typ is float:
            return float(text)
        if typ is dict or typing.get_origin(typ) is dict:
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError
            return value
        return str(text)
    except ValueError:
        name = getattr(typ, "__name__", str(typ))
        raise UserError(f"--{key}={text}: expected {'a JSON object' if typ is dict else name}") from None


def parse_overrides(words) -> tuple[dict, dict]:
    """['--n_layer=2', '--lr=3e-4'] -> ({model fields}, {train fields})."""
    from ..recipes import field_types

    fields = field_types()
    model, train = {}, {}
    for word in words:
        if not word.startswith("--") or "=" not in word:
            raise UserError(f"unexpected argument {word!r}: overrides are written --key=value")
        key, value = word[2:].split("=", 1)
        key = key.replace("-", "_")
        if key == "time_budget":  # a duration: 25m, 90s, 1h30m, or seconds
            from ..train.budget import parse_duration

            train[key] = parse_duration(value)
            continue
        if key not in fields:
            raise UserError(f"unknown option --{key} (not a model or training field; "
                            "see zeroformer/config.py and zeroformer/train/config.py)")
        kind, typ = fields[key]
        (model if kind == "model" else train)[key] = convert(key, value, typ)
    return model, train


def run(args):
    from .. import recipes

    if args.list:
        table = recipes.all_recipes()
        width = max((len(n) for n in table), default=0)
        for name, r in table.items():
            print(f"{name:<{width}}  {r.description}")
        return 0
    if not args.recipe:
        raise UserError("train: give a RECIPE name (see `zeroformer train --list`)")
    recipe = recipes.get(args.recipe)
    model_over, train_over = parse_overrides(args.overrides)
    if not args.out:
        raise UserError("train: --out DIR is required (the run folder for checkpoints)")
    for flag, key in (("max_steps", "max_steps"), ("save_every", "save_every"), ("seed", "seed"),
                      ("data", "data"), ("eval_data", "eval_data"), ("model", "init"),
                      ("average_last", "average_last")):
        if getattr(args, flag) is not None:
            train_over[key] = getattr(args, flag)
    if args.time_budget is not None:
        from ..train.budget import parse_duration

        if args.max_steps is not None:
            raise UserError("train: give --max-steps or --time-budget, not both (the budget "
                            "decides the number of steps)")
        train_over["time_budget"] = parse_duration(args.time_budget)
    given = {f.replace("-", "_"): getattr(args, f.replace("-", "_")) for f in FILE_FLAGS
             if getattr(args, f.replace("-", "_")) is not None}
    refused = [k for k in given if k not in recipe.inputs]
    if refused:
        raise UserError(f"recipe {recipe.name} does not take --{refused[0].replace('_', '-')}")
    if given:
        train_over["extra"] = {**train_over.get("extra", {}), **given}
    if args.fsdp:
        train_over["fsdp"] = True
    train_over.setdefault("dtype", "auto")   # bf16 autocast where the hardware has it natively
    mcfg = recipe.model_config(**model_over)
    tcfg = recipe.train_config(**train_over)
    if tcfg.block_size > mcfg.max_seq_len and "max_seq_len" not in model_over:
        mcfg = mcfg.replace(max_seq_len=tcfg.block_size)

    from ..train import Trainer, distributed, memory
    from ..train.trainer import seed_everything

    world = distributed.world_from_env()
    nproc = args.nproc if args.nproc is not None else world.size
    # before any weight exists: one line instead of the kernel's OOM kill (a --model run's
    # size is known only once it is loaded: not checked). Once per machine: by --nproc's
    # launcher before any rank starts, else by local rank 0 (a later rank would see the memory
    # its siblings already hold as taken)
    if tcfg.memory_check and not tcfg.init and world.local_rank == 0 \
            and os.environ.get(CHECKED_ENV) != "1":
        memory.check_training(mcfg, tcfg, nproc)
    if args.nproc is not None and args.nproc != 1:
        return launch(args, args.nproc, tcfg.batch_size)
    seed_everything(tcfg.seed)  # model init is a function of the seed (the same on every rank)
    try:
        task = recipe.build(mcfg, tcfg)
        trainer = Trainer(task, tcfg, args.out, meta={"recipe": recipe.name})
        result = trainer.fit(resume=args.resume)
    finally:
        distributed.shutdown()
    if trainer.world.main and result.get("stopped"):
        nproc = ["--nproc", str(trainer.world.size)] * (trainer.world.size > 1)
        again = " ".join(shlex.quote(w) for w in ["zeroformer", "train", *nproc,
                                                   *train_words(args, resume=True)])
        sys.stderr.write(f"stopped by {result['stopped']} after step {result['step']}; "
                         f"checkpoint {result['checkpoint']}; continue with: {again}\n")
    elif trainer.world.main:
        evals = [e for e in result["log"] if "val_loss" in e and "averaged" not in e]
        tail = f"; val_loss {evals[-1]['val_loss']:.4f}" if evals else ""
        averaged = [e for e in result["log"] if "averaged" in e]
        if averaged and "val_loss" in averaged[-1]:
            tail += (f"; averaged checkpoints {averaged[-1]['averaged']}: val_loss "
                     f"{averaged[-1]['val_loss']:.4f} ({os.path.join(args.out, 'averaged')})")
        sys.stderr.write(f"done: step {result['step']}; checkpoint {result['checkpoint']}{tail}\n")
    return 0


def launch(args, nproc: int, batch_size: int) -> int:
    """Run this same command on `nproc` local processes through torchrun; its exit status."""
    import subprocess

    from ..train import distributed

    if nproc < 1:
        raise UserError(f"--nproc must be >= 1 (got {nproc})")
    if distributed.world_from_env().size > 1:
        raise UserError("--nproc inside torchrun: give one or the other")
    distributed.check_batch_size(batch_size, distributed.World(size=nproc))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "zeroformer", "train", *train_words(args)]
    # SIGINT / SIGTERM go to the ranks themselves: they finish the step, save and exit 0, so
    # torchrun ends well (torchrun signalled itself exits 1 after forwarding to them)
    proc = subprocess.Popen(cmd, start_new_session=True, env={**os.environ, CHECKED_ENV: "1"})

    def forward(signum, frame):
        for pid in _descendants(proc.pid) or [proc.pid]:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return proc.wait()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _descendants(pid: int) -> list[int]:
    """Process ids below `pid` (Linux /proc; empty elsewhere): torchrun starts each rank in a
    session of its own, so signalling torchrun's process group would miss the ranks."""
    children: dict[int, list[int]] = {}
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return []
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def train_words(args, resume: bool = False) -> list[str]:
    """The words after `zeroformer train` that repeat this command (without --nproc)."""
    words = [args.recipe, "--out", args.out] + ["--fsdp"] * bool(args.fsdp)
    for flag in ("max_steps", "time_budget", "average_last", "save_every", "seed", "data",
                 "eval_data", "model", *(f.replace("-", "_") for f in FILE_FLAGS)):
        if getattr(args, flag) is not None:
            words += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    return words + ["--resume"] * bool(args.resume or resume) + list(args.overrides)
