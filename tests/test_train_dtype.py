"""`zeroformer train --dtype auto` (the command's default): bf16 autocast where the hardware has
native bf16, fp32 elsewhere; the choice is printed and saved, and an auto resume continues in the
checkpoint's dtype. (bf16 against fp32 within tolerance: tests/test_trainer.py.)"""

from pathlib import Path

import pytest
import torch

from zeroformer.cli import main
from zeroformer.io.checkpoint import latest_checkpoint, load_trainer_state
from zeroformer.train.trainer import resolve_dtype

CPU = torch.device("cpu")


def _cpuinfo_flags() -> set:
    p = Path("/proc/cpuinfo")
    if not p.exists():
        pytest.skip("no /proc/cpuinfo (not Linux)")
    return {w for line in p.read_text().splitlines() if line.startswith("flags")
            for w in line.split(":", 1)[1].split()}


def test_auto_follows_this_cpus_flags():
    native = {"avx512_bf16", "amx_bf16"} & _cpuinfo_flags()
    dtype, why = resolve_dtype("auto", CPU)
    assert dtype == ("bf16" if native else "fp32")
    assert why.startswith("auto:") and (not native or why.split()[-1] in native)


@pytest.mark.parametrize("flag,dtype", [("amx_bf16", "bf16"), ("avx512_bf16", "bf16"),
                                        (None, "fp32")])
def test_auto_on_cpus_with_and_without_bf16(monkeypatch, flag, dtype):
    monkeypatch.setattr("zeroformer.nn.fast.cpu_has_native_bf16", lambda: flag)
    assert resolve_dtype("auto", CPU)[0] == dtype
    assert resolve_dtype("fp32", CPU) == ("fp32", "asked")
    assert resolve_dtype("bf16", CPU) == ("bf16", "asked")


@pytest.mark.parametrize("width,dtype", [(128, "fp32"), (511, "fp32"), (512, "bf16"),
                                         (768, "bf16"), (None, "bf16")])
def test_auto_on_a_bf16_cpu_depends_on_the_width(monkeypatch, width, dtype):
    """Narrow models train faster in fp32 even where the CPU has bf16 (machine.py's docstring)."""
    monkeypatch.setattr("zeroformer.nn.fast.cpu_has_native_bf16", lambda: "amx_bf16")
    got, why = resolve_dtype("auto", CPU, width)
    assert got == dtype
    assert (f"d_model {width} < 512" in why) == (dtype == "fp32")
    assert resolve_dtype("bf16", CPU, 128) == ("bf16", "asked")


def _dtype_line(err: str) -> str:
    return next(line for line in err.splitlines() if line.startswith("dtype:"))


def _saved_dtype(out) -> str:
    return load_trainer_state(latest_checkpoint(out))[0]["train_config"]["dtype"]


def test_train_default_is_auto_printed_saved_and_resumed(tmp_path, capsys, monkeypatch):
    """A run with no --dtype on a bf16 CPU trains in bf16 and says so; resumed on a CPU without
    bf16 it stays bf16 (the checkpoint's dtype: exact resume); --dtype=fp32 is honoured."""
    run = ["train", "toy", "--out", str(tmp_path / "run"), "--save-every", "1",
           "--progress=false", "--device=cpu", "--d_model=512", "--n_head=8", "--d_ff=512"]
    monkeypatch.setattr("zeroformer.nn.fast.cpu_has_native_bf16", lambda: "avx512_bf16")
    assert main(run + ["--max-steps", "1"]) == 0
    assert _dtype_line(capsys.readouterr().err) == "dtype: bf16 autocast (auto: this CPU has avx512_bf16)"
    assert _saved_dtype(tmp_path / "run") == "bf16"
    monkeypatch.setattr("zeroformer.nn.fast.cpu_has_native_bf16", lambda: None)
    assert main(run + ["--max-steps", "2", "--resume"]) == 0
    assert _dtype_line(capsys.readouterr().err) == "dtype: bf16 autocast (auto: the checkpoint's dtype)"
    assert _saved_dtype(tmp_path / "run") == "bf16"
    fp32 = ["train", "toy", "--out", str(tmp_path / "fp32"), "--max-steps", "1",
            "--progress=false", "--device=cpu", "--dtype=fp32"]
    assert main(fp32) == 0
    assert _dtype_line(capsys.readouterr().err) == "dtype: fp32 (asked)"
    assert _saved_dtype(tmp_path / "fp32") == "fp32"
    narrow = ["train", "toy", "--out", str(tmp_path / "narrow"), "--max-steps", "1",
              "--progress=false", "--device=cpu"]                      # the toy's d_model is 32
    monkeypatch.setattr("zeroformer.nn.fast.cpu_has_native_bf16", lambda: "avx512_bf16")
    assert main(narrow) == 0
    assert _dtype_line(capsys.readouterr().err) == \
        "dtype: fp32 (auto: d_model 32 < 512, faster in fp32 on this CPU (it has avx512_bf16))"
