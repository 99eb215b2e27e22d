"""Data parallel training (torchrun + gloo, 2 CPU processes) means the same training as one
process: every logged loss and the final weights agree within 1e-5 (dropout off); gradient
accumulation k x b equals one batch of k*b rows; a batch that does not divide is one error line;
a 2-process run killed with SIGKILL (all ranks) and resumed ends with the uninterrupted weights.
FSDP (--fsdp): the same training as one process; sharded checkpoints that a SIGKILLed run
resumes from bit for bit, that convert to a folder giving the sharded model's logits (also in
transformers), that load without pickle, and whose damage is one error (resume falls back)."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from zeroformer import recipes
from zeroformer.cli import main
from zeroformer.cli.cmd_train import _descendants as descendants  # the ranks under torchrun
from zeroformer.io import checkpoint as ckpt, sharded
from zeroformer.train import LMTask, Trainer, TrainConfig
from zeroformer.train.data import batch_generator
from zeroformer.train.distributed import World, check_batch_size, shard_rows
from zeroformer.train.trainer import seed_everything
from zeroformer.errors import UserError

pytestmark = pytest.mark.skipif(not torch.distributed.is_available()
                                or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# dropout off: N processes draw other dropout masks than one (zeroformer/train/distributed.py)
ARGS = ["--max-steps", "30", "--save-every", "3", "--dropout=0.0", "--log_every=1",
        "--eval_every=10", "--grad_accum=2", "--progress=false", "--device=cpu",
        "--dtype=fp32"]  # equality within 1e-5 is an fp32 statement (the CLI default is auto)


def env():
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        e.pop(k, None)
    return e


def torchrun(*words, **kw):
    """`torchrun --standalone --nproc_per_node 2 -m zeroformer train ...` as a Popen."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "zeroformer", "train", *words]
    return subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def final(out):
    folder = ckpt.latest_checkpoint(out)
    state, _ = ckpt.load_trainer_state(folder)
    return state, load_file(str(folder / "model.safetensors"))


def assert_same_training(a, b, atol):
    (state_a, w_a), (state_b, w_b) = a, b
    la = [e["loss"] for e in state_a["log"] if "loss" in e]
    lb = [e["loss"] for e in state_b["log"] if "loss" in e]
    assert len(la) == len(lb) == 30
    assert max(abs(x - y) for x, y in zip(la, lb)) <= atol, (la, lb)
    va = [e["val_loss"] for e in state_a["log"] if "val_loss" in e]
    vb = [e["val_loss"] for e in state_b["log"] if "val_loss" in e]
    assert len(va) == len(vb) == 3
    assert max(abs(x - y) for x, y in zip(va, vb)) <= atol
    assert w_a.keys() == w_b.keys()
    for k in w_a:
        if k.endswith("k_proj.bias"):
            # the key bias gets no gradient in exact arithmetic (softmax_j(q.(k_j + b)) shifts
            # every score of a query by q.b: invariant), so it holds rounding noise that Adam's
            # g / sqrt(v) turns into lr-sized steps of random sign: it must stay noise-sized
            assert w_a[k].abs().max() < 1e-3 and w_b[k].abs().max() < 1e-3, k
            continue
        torch.testing.assert_close(w_a[k], w_b[k], rtol=0, atol=atol, msg=k)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "run"
    assert main(["train", "toy", "--out", str(out), *ARGS]) == 0
    return final(out)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """The shortcut: `zeroformer train --nproc 2 ...` launches torchrun."""
    out = tmp_path_factory.mktemp("two") / "run"
    p = subprocess.run([sys.executable, "-m", "zeroformer", "train", "toy", "--nproc", "2",
                        "--out", str(out), *ARGS], env=env(), capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    # rank 0 alone prints: each log line once
    assert p.stderr.count("step     30 | loss") == 1, p.stderr[-3000:]
    assert p.stderr.count("done: step 30") == 1
    return out, final(out)


def test_two_processes_train_as_one(one_process, two_processes):
    assert_same_training(two_processes[1], one_process, atol=1e-5)


def kill_at_first_checkpoint(p, out) -> None:
    """SIGKILL torchrun `p` and all its ranks at once as soon as `out` has a checkpoint (often
    while the next is being written); the run must not have ended by then."""
    try:
        deadline = time.monotonic() + 240
        while ckpt.latest_checkpoint(out) is None and p.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        for pid in [p.pid, *descendants(p.pid)]:  # torchrun and both ranks, all at once
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.communicate()
    killed_at = int(ckpt.load_trainer_state(ckpt.latest_checkpoint(out))[0]["step"])
    assert killed_at < 30, "the run ended before it could be killed"


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the ranks through /proc (Linux)")
def test_killed_and_resumed_two_process_run_ends_as_uninterrupted(tmp_path):
    """Dropout ON: each rank's masks must come back after resume too (distributed.step_seed)."""
    args = [*ARGS, "--dropout=0.1"]
    ref = torchrun("toy", "--out", str(tmp_path / "ref"), *args)
    _, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err[-3000:]
    out = tmp_path / "run"
    kill_at_first_checkpoint(torchrun("toy", "--out", str(out), *args), out)
    r = torchrun("toy", "--out", str(out), "--resume", *args)
    _, err = r.communicate(timeout=300)
    assert r.returncode == 0, err[-3000:]
    state, weights = final(out)
    ref_state, ref_weights = final(tmp_path / "ref")
    # the log of a resumed run holds the entries of both parts: the same 30 losses
    assert [e["loss"] for e in state["log"] if "loss" in e] == \
        [e["loss"] for e in ref_state["log"] if "loss" in e]
    for k in ref_weights:
        assert torch.equal(weights[k], ref_weights[k]), k


WORKER = """
import json, sys
import torch
from safetensors.torch import save_file
from zeroformer import recipes
from zeroformer.models import build_model
from zeroformer.recipes.lm import ToyTask
from zeroformer.train import Trainer, distributed
from zeroformer.train.trainer import seed_everything

class MaskedToy(ToyTask):
    # row b ignores its first 2*b targets: rank 0's rows count far more targets than rank 1's
    def make_batch(self, gen, split):
        batch = super().make_batch(gen, split)
        labels = batch["labels"].clone()
        for b in range(labels.size(0)):
            labels[b, : 2 * b] = -100
        return {**batch, "labels": labels}

    def loss(self, model, batch):
        if model.training:
            seen.append(batch["input_ids"].tolist())
        return super().loss(model, batch)

seen = []
recipe = recipes.get("toy")
mcfg = recipe.model_config(dropout=0.0)
cfg = recipe.train_config(max_steps=12, grad_accum=2, log_every=1, eval_every=0, progress=False,
                          device="cpu", lr=1e-2)
seed_everything(cfg.seed)
task = MaskedToy(build_model(mcfg), batch_size=cfg.batch_size, block_size=cfg.block_size, seed=cfg.seed,
                 eval_steps=1)
trainer = Trainer(task, cfg)
result = trainer.fit()
rank = trainer.world.rank
json.dump({"log": result["log"], "seen": seen}, open(f"{sys.argv[1]}.{rank}.json", "w"))
if rank == 0:
    save_file({k: v.clone() for k, v in task.model.state_dict().items()}, sys.argv[1] + ".st")
distributed.shutdown()
"""


def test_uneven_target_counts_per_rank_combine_to_the_one_process_loss(tmp_path):
    """Padding-like ignored targets differ between the ranks' rows; per-rank means averaged
    would differ from the one-process mean. Also: the ranks see disjoint rows covering each
    global batch, in rank order."""
    import json

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one")], env=env(),
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node=2", str(script), str(tmp_path / "two")], env=env(),
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    ref = json.loads((tmp_path / "one.0.json").read_text())
    r0, r1 = (json.loads((tmp_path / f"two.{r}.json").read_text()) for r in (0, 1))
    assert [len(b) for b in r0["seen"]] == [4] * 24 and [len(b) for b in r1["seen"]] == [4] * 24
    assert [a + b for a, b in zip(r0["seen"], r1["seen"])] == ref["seen"]
    losses = [e["loss"] for e in ref["log"] if "loss" in e]
    assert len(losses) == 12
    for log in (r0["log"], r1["log"]):  # every rank logs the global loss
        mine = [e["loss"] for e in log if "loss" in e]
        assert len(mine) == 12 and max(abs(x - y) for x, y in zip(losses, mine)) <= 1e-5
    w1, w2 = load_file(str(tmp_path / "one.st")), load_file(str(tmp_path / "two.st"))
    for k in w1:
        if not k.endswith("k_proj.bias"):  # no gradient: noise (see assert_same_training)
            torch.testing.assert_close(w1[k], w2[k], rtol=0, atol=1e-5, msg=k)


def test_batch_that_does_not_divide_is_one_error_line(tmp_path):
    p = subprocess.run([sys.executable, "-m", "zeroformer", "train", "toy", "--nproc", "2",
                        "--out", str(tmp_path / "run"), "--batch_size=7"], env=env(),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zeroformer: error:"), p.stderr
    assert "batch_size=7" in lines[0] and "2 processes" in lines[0]
    assert not (tmp_path / "run").exists()


# -- in one process ------------------------------------------------------------------------------
def test_shard_rows_partitions_each_batch_in_rank_order():
    batch = {"input_ids": torch.arange(30).view(10, 3), "labels": torch.arange(10), "n": 7}
    for size in (1, 2, 3, 4):
        parts = [shard_rows(batch, World(r, size)) for r in range(size)]
        assert torch.equal(torch.cat([p["input_ids"] for p in parts]), batch["input_ids"])
        assert torch.equal(torch.cat([p["labels"] for p in parts]), batch["labels"])
        sizes = [len(p["labels"]) for p in parts]
        assert max(sizes) - min(sizes) <= 1 and all(p["n"] == 7 for p in parts)
    with pytest.raises(UserError, match="cannot feed"):
        shard_rows(batch, World(0, 11))
    check_batch_size(8, World(0, 4))
    with pytest.raises(UserError, match="does not divide"):
        check_batch_size(6, World(0, 4))


class RowStreamTask(LMTask):
    """Micro-batch i of b rows = rows [i*b, (i+1)*b) of one fixed stream: k micro-batches of b
    rows cover exactly the rows of one batch of k*b (the toy recipe's rows, drawn per row)."""

    def eval_batches(self):
        return []

    def train_batch(self, index):
        v, b, t = self.model.config.vocab_size, self.batch_size, self.block_size
        rows = []
        for j in range(index * b, (index + 1) * b):
            g = batch_generator(self.seed, j, "row")
            start, stride = torch.randint(0, v, (1,), generator=g), torch.randint(1, 4, (1,), generator=g)
            rows.append((start + stride * torch.arange(t + 1)) % v)
        rows = torch.stack(rows)
        return {"input_ids": rows[:, :-1], "labels": rows[:, 1:]}


def train_rows(batch_size, grad_accum):
    recipe = recipes.get("toy")
    mcfg = recipe.model_config(dropout=0.0)
    cfg = TrainConfig(**{**recipe.train_config().to_dict(), "batch_size": batch_size,
                         "grad_accum": grad_accum, "max_steps": 8, "log_every": 1,
                         "eval_every": 0, "progress": False, "device": "cpu",
                         # AdamW (m / sqrt(v)) and clipping cancel a constant factor on the
                         # gradient; eps = 1 and no clipping make the step see its size too
                         "eps": 1.0, "grad_clip": 0.0, "lr": 0.05})
    seed_everything(cfg.seed)
    from zeroformer.models import build_model

    task = RowStreamTask(build_model(mcfg), batch_size=batch_size, block_size=cfg.block_size,
                         seed=cfg.seed)
    result = Trainer(task, cfg).fit()
    return [e["loss"] for e in result["log"]], task.model.state_dict()


def test_gradient_accumulation_k_by_b_equals_one_batch_of_k_times_b():
    losses_a, w_a = train_rows(batch_size=2, grad_accum=4)
    losses_b, w_b = train_rows(batch_size=8, grad_accum=1)
    assert len(losses_a) == len(losses_b) == 8
    assert max(abs(x - y) for x, y in zip(losses_a, losses_b)) <= 1e-5
    for k in w_a:
        if not k.endswith("k_proj.bias"):  # no gradient: noise (see assert_same_training)
            torch.testing.assert_close(w_a[k], w_b[k], rtol=0, atol=1e-5, msg=k)


def test_trainer_refuses_what_n_processes_cannot_train_as_one(monkeypatch):
    """Under torchrun (faked: a World of 2 without a process group) a batch that does not divide,
    or a task whose loss is not one mean over counted positions, is a UserError before DDP."""
    from zeroformer.train import distributed

    monkeypatch.setattr(distributed, "init", lambda device: (World(0, 2), device))
    recipe = recipes.get("toy")
    seed_everything(0)
    task = recipe.build(recipe.model_config(), recipe.train_config())
    with pytest.raises(UserError, match="batch_size=7 does not divide among 2 processes"):
        Trainer(task, recipe.train_config(batch_size=7, device="cpu"))
    task.data_parallel = False
    with pytest.raises(UserError, match="ToyTask cannot train on 2 processes"):
        Trainer(task, recipe.train_config(device="cpu"))


# -- FSDP (--fsdp): sharded weights, gradients, AdamW state; sharded checkpoints ----------------
@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory):
    """`zeroformer train --nproc 2 --fsdp ...`: the same command as two_processes, sharded."""
    out = tmp_path_factory.mktemp("fsdp") / "run"
    p = subprocess.run([sys.executable, "-m", "zeroformer", "train", "toy", "--nproc", "2",
                        "--fsdp", "--out", str(out), *ARGS], env=env(), capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stderr.count("done: step 30") == 1
    return out


def converted(run, tmp_path):
    """`zeroformer convert RUN OUT` -> (trainer state of RUN's latest, weights of OUT)."""
    assert main(["convert", str(run), str(tmp_path / "converted")]) == 0
    folder = ckpt.latest_checkpoint(run)
    return (ckpt.load_trainer_state(folder)[0],
            load_file(str(tmp_path / "converted" / "model.safetensors")))


def test_fsdp_trains_as_one_process_and_saves_sharded(one_process, fsdp_run, tmp_path):
    folder = ckpt.latest_checkpoint(fsdp_run)
    assert not (folder / "model.safetensors").exists()  # each rank wrote its own rows
    assert len(list((folder / sharded.SHARDS_DIR).glob("*.safetensors"))) == 2
    assert_same_training(converted(fsdp_run, tmp_path), one_process, atol=1e-5)


RESUME_WORKER = """
import sys, torch
from safetensors.torch import save_file
from zeroformer import recipes
from zeroformer.train import Trainer, distributed
from zeroformer.train.trainer import seed_everything

# exactly what `zeroformer train toy --fsdp ... ARGS` builds (resume checks every field)
recipe = recipes.get("toy")
cfg = recipe.train_config(max_steps=30, save_every=3, log_every=1, eval_every=10, grad_accum=2,
                          progress=False, device="cpu", dtype="fp32", fsdp=True)
seed_everything(cfg.seed)
task = recipe.build(recipe.model_config(dropout=0.0), cfg)
trainer = Trainer(task, cfg, sys.argv[1], meta={"recipe": "toy"})
trainer.fit(resume=True)
ids = torch.arange(24).view(2, 12) * 5 % task.model.config.vocab_size
with torch.no_grad():
    logits = task.model.eval()(ids)  # every rank: each unit is gathered around its forward
if trainer.world.main:
    save_file({"logits": logits.contiguous()}, sys.argv[1] + ".logits.safetensors")
distributed.shutdown()
"""


@pytest.fixture(scope="module")
def fsdp_killed_and_resumed(fsdp_run, tmp_path_factory):
    """`zeroformer train --fsdp` under torchrun, SIGKILLed (torchrun and both ranks) once a first
    sharded checkpoint exists (often while the next is being written), then resumed by a script
    that also saves the logits of the sharded model at the end. Returns the run folder."""
    if not os.path.isdir("/proc"):
        pytest.skip("finds the ranks through /proc (Linux)")
    tmp = tmp_path_factory.mktemp("fsdp_killed")
    out = tmp / "run"
    kill_at_first_checkpoint(torchrun("toy", "--fsdp", "--out", str(out), *ARGS), out)
    script = tmp / "resume.py"
    script.write_text(RESUME_WORKER)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc_per_node=2", str(script), str(out)], env=env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_fsdp_run_killed_and_resumed_ends_as_uninterrupted(fsdp_run, fsdp_killed_and_resumed):
    """The weights AND AdamW moments of the uninterrupted run, bit for bit (every shard's
    tensors), and the same 30 logged losses."""
    a, b = ckpt.latest_checkpoint(fsdp_killed_and_resumed), ckpt.latest_checkpoint(fsdp_run)
    assert [e["loss"] for e in ckpt.load_trainer_state(a)[0]["log"] if "loss" in e] == \
        [e["loss"] for e in ckpt.load_trainer_state(b)[0]["log"] if "loss" in e]
    names = sorted(f.name for f in (b / sharded.SHARDS_DIR).glob("*.safetensors"))
    assert len(names) == 2
    for name in names:
        ta, tb = (load_file(str(f / sharded.SHARDS_DIR / name)) for f in (a, b))
        assert ta.keys() == tb.keys() and any(k.startswith("optim.") for k in ta)
        for k in ta:
            assert torch.equal(ta[k], tb[k]), (name, k)


def test_fsdp_checkpoint_converts_to_a_folder_with_the_sharded_models_logits(
        fsdp_killed_and_resumed, tmp_path):
    import zeroformer

    run = fsdp_killed_and_resumed
    assert main(["convert", str(run), str(tmp_path / "zf")]) == 0
    expected = load_file(str(run) + ".logits.safetensors")["logits"]
    ids = torch.arange(24).view(2, 12) * 5 % 16
    model = zeroformer.load(tmp_path / "zf")
    with torch.no_grad():
        torch.testing.assert_close(model(ids), expected, rtol=0, atol=1e-6)
    transformers = pytest.importorskip("transformers")  # a reader we did not write
    assert main(["convert", str(run), str(tmp_path / "hf"), "--to", "hf"]) == 0
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, expected, rtol=0, atol=1e-5)


def damaged_copy(run, tmp_path, damage):
    """A copy of `run` whose latest checkpoint `damage(folder)` spoils."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    damage(ckpt.latest_checkpoint(copy))
    return copy


def test_sharded_checkpoint_is_read_without_pickle(fsdp_run, monkeypatch):
    """DCP's own FileSystemReader unpickles its .metadata; ours never calls pickle at all."""
    import pickle

    import torch.distributed.checkpoint  # noqa: F401  (imported before pickle is taken away)
    import torch.distributed.checkpoint.hf_storage  # noqa: F401
    import torch.distributed.checkpoint.state_dict  # noqa: F401

    def refuse(*a, **k):
        raise AssertionError("pickle was called")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    model = ckpt.load_checkpoint(fsdp_run)
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("how", ["a shard file lost", "pieces missing", "NaN", "truncated"])
def test_damaged_sharded_checkpoint_is_one_error_and_resume_falls_back(fsdp_run, tmp_path, how,
                                                                       capsys):
    import json

    def damage(folder):
        shards = sorted((folder / sharded.SHARDS_DIR).glob("*.safetensors"))
        index = folder / sharded.INDEX_FILE
        if how == "a shard file lost":
            shards[1].unlink()
        elif how == "pieces missing":  # the index forgets rank 1: rows of every tensor absent
            shards[1].unlink()
            info = json.loads(index.read_text())
            index.write_text(json.dumps({**info, "files": info["files"][:1]}))
        elif how == "NaN":
            t = load_file(str(shards[0]))
            from safetensors import safe_open
            from safetensors.torch import save_file

            with safe_open(str(shards[0]), "pt") as f:
                meta = f.metadata()
            key = next(k for k in t if k.startswith("model."))
            t[key] = torch.full_like(t[key], float("nan"))
            save_file(t, str(shards[0]), metadata=meta)
        else:
            shards[0].write_bytes(shards[0].read_bytes()[:1000])

    copy = damaged_copy(fsdp_run, tmp_path, damage)
    expect = {"a shard file lost": "is missing", "pieces missing": "do not (tile|hold)",
              "NaN": "non-finite", "truncated": "not a valid safetensors"}[how]
    with pytest.raises(UserError, match=expect):
        ckpt.load_checkpoint(copy)
    if how != "NaN":  # found before loading: resume picks the previous whole checkpoint
        folder = ckpt.resumable_checkpoint(copy)
        assert folder.name < ckpt.latest_checkpoint(copy).name
        assert "resuming from" in capsys.readouterr().err


def test_fsdp_on_one_process_is_one_error_line(tmp_path, capsys):
    assert main(["train", "toy", "--out", str(tmp_path / "run"), "--fsdp", "--device=cpu",
                 "--progress=false"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--fsdp shards the model over processes" in err[0], err
