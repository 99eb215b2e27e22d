"""The memory guard (zeroformer/train/memory.py): a run that cannot fit stops before it allocates,
with one line and a suggestion that fits; the estimate is an upper bound of a real run's peak
resident memory within a stated factor (0.8x-3x)."""

import os
import subprocess
import sys

import pytest

from zeroformer import recipes
from zeroformer.cli import main
from zeroformer.train import memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_an_obviously_too_big_run_is_one_error_line_before_anything_is_built(tmp_path, capsys):
    # 64 layers of width 65536: terabytes. Counting its parameters allocates nothing (meta device)
    out = tmp_path / "run"
    rc = main(["train", "toy", "--out", str(out), "--d_model=65536", "--n_layer=64",
               "--n_head=64", "--device=cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("zeroformer: error: needs about ") and "GiB free; try " in err[0]
    need = float(err[0].split("needs about ")[1].split()[0])
    assert need > 1000  # GiB
    assert not out.exists()


def test_the_suggestion_keeps_the_rows_per_step_and_fits(monkeypatch):
    recipe = recipes.get("toy")
    mcfg = recipe.model_config(d_model=256, d_ff=1024, n_head=4)
    tcfg = recipe.train_config(batch_size=64, block_size=32, grad_accum=1, device="cpu")
    need = memory.training_bytes(mcfg, tcfg, 1)
    quarter = recipe.train_config(batch_size=16, block_size=32, grad_accum=4, device="cpu")
    fits = memory.training_bytes(mcfg, quarter, 1)
    assert fits < need
    monkeypatch.setattr(memory, "available_bytes", lambda device: fits)
    with pytest.raises(memory.UserError, match=r"try --batch_size=16 --grad_accum=4 "
                                                r"\(the same rows per step\) or --fsdp"):
        memory.check_training(mcfg, tcfg, 1)
    memory.check_training(mcfg, quarter, 1)  # what it suggested passes
    monkeypatch.setattr(memory, "available_bytes", lambda device: need)
    memory.check_training(mcfg, tcfg, 1)


def test_fsdp_shares_the_states_and_ddp_pays_for_its_buckets():
    recipe = recipes.get("toy")
    mcfg = recipe.model_config(d_model=512, d_ff=2048, n_layer=8, n_head=8, vocab_size=32000)
    p, root, block = memory.parameter_counts(mcfg)
    assert root + 8 * block == p and block > 0
    solo = memory.training_bytes(mcfg, recipe.train_config(batch_size=1, block_size=8), 1)
    # two processes of one row each: the same activations per process as one process of one row
    ddp = memory.training_bytes(mcfg, recipe.train_config(batch_size=2, block_size=8), 2)
    fsdp = recipe.train_config(batch_size=2, block_size=8, fsdp=True)
    rank0 = memory.training_bytes(mcfg, fsdp, 2)
    rank1 = memory.training_bytes(mcfg, fsdp, 2, rank0=False)
    assert ddp - solo == 4 * p                               # DDP's gradient buckets
    assert solo - rank1 == 16 * p - 16 * p // 2 - 4 * (root + 2 * block)
    assert rank0 - rank1 == 8 * p                            # rank 0's whole copy for evaluation


# the child's own high-water mark: VmHWM belongs to the process's memory after exec (ru_maxrss
# would also count the forked copy of a large pytest process it started from)
PEAK = """
import sys
from zeroformer.cli import main
rc = main(sys.argv[2:])
status = open("/proc/self/status").read().split("VmHWM:")[1].split()
open(sys.argv[1], "w").write(status[0])
sys.exit(rc)
"""


@pytest.mark.skipif(not os.path.isfile("/proc/self/status"), reason="reads VmHWM (Linux)")
def test_the_estimate_is_within_a_factor_of_a_real_runs_peak_memory(tmp_path):
    """One real step of a model whose activations dominate (2048 x 16 tokens): the estimate is
    between 0.8 and 3 times the measured peak resident memory (about 1.0x when measured)."""
    words = ["--d_model=128", "--d_ff=512", "--n_head=4", "--batch_size=2048", "--block_size=16",
             "--dropout=0.0", "--eval_steps=1", "--dtype=fp32", "--device=cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    p = subprocess.run([sys.executable, "-c", PEAK, str(tmp_path / "peak"), "train", "toy",
                        "--out", str(tmp_path / "run"), "--max-steps", "1", "--progress=false",
                        *words], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    peak = int((tmp_path / "peak").read_text()) * 1024  # VmHWM is in kB
    from zeroformer.cli.cmd_train import parse_overrides

    model_over, train_over = parse_overrides(words)
    recipe = recipes.get("toy")
    estimate = memory.training_bytes(recipe.model_config(**model_over),
                                     recipe.train_config(**train_over), 1)
    print(f"peak {peak / memory.GIB:.2f} GiB, estimate {estimate / memory.GIB:.2f} GiB")
    assert 0.8 * peak <= estimate <= 3 * peak, (peak / memory.GIB, estimate / memory.GIB)


def test_generation_checks_its_kv_cache_against_free_memory(monkeypatch):
    from zeroformer.models import build_model

    recipe = recipes.get("toy")
    model = build_model(recipe.model_config(n_layer=2, d_model=32, n_head=2))
    kv = 2 * 2 * 3 * 1000 * 32 * 4  # K and V, 2 layers, 3 rows, 1000 positions, 32 wide, fp32
    assert memory.generation_bytes(model.config, 3, 1000) >= kv
    monkeypatch.setattr(memory, "available_bytes", lambda device: kv // 2)
    with pytest.raises(memory.UserError, match=r"needs about .* KV cache of 3 x 1000 positions"):
        memory.check_generation(model, 3, 1000)
    monkeypatch.setattr(memory, "available_bytes", lambda device: 10 * kv)
    memory.check_generation(model, 3, 1000)
