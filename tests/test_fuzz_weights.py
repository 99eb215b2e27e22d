"""Fuzzed model files (tests/hostile.py): safetensors headers and data, our config.json and Hugging
Face config.json files, NaN/Inf weights, and a training run's latest.json / trainer state /
optimizer file. Each reader returns or raises a UserError naming the file; nothing allocates past
a 1 GiB address-space cap, nothing else escapes."""

import json
import shutil
import struct

import pytest
import torch
from hypothesis import given, strategies as st
from hostile import (FUZZ, Tally, byte_mutations, check, dump_json, json_file_variants,
                     json_mutations)

import zeroformer
from zeroformer import recipes
from zeroformer.config import preset
from zeroformer.errors import UserError
from zeroformer.io import checkpoint as ckpt
from zeroformer.models import build_model
from zeroformer.train import Trainer
from zeroformer.train.trainer import seed_everything


def tiny(**over):
    torch.manual_seed(0)
    return build_model(preset("tiny", **{**dict(vocab_size=37, n_layer=1, d_model=16, n_head=2,
                                                d_ff=32, max_seq_len=8), **over}))


def split_safetensors(raw: bytes):
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def join_safetensors(header, data: bytes) -> bytes:
    h = dump_json(header)
    return struct.pack("<Q", len(h)) + h + data


@st.composite
def safetensors_variants(draw, valid: bytes):
    """Raw-byte mutations, or a valid data block under a mutated header (wrong dtypes, shapes
    that disagree with the bytes, huge offsets, unknown fields), or NaN/Inf in the data."""
    kind = draw(st.sampled_from(["bytes", "header", "header", "nonfinite"]))
    if kind == "bytes":
        return draw(byte_mutations(valid))
    header, data = split_safetensors(valid)
    if kind == "header":
        return join_safetensors(draw(json_mutations(header)), data)
    name = draw(st.sampled_from(sorted(k for k in header if k != "__metadata__")))
    begin, end = header[name]["data_offsets"]
    i = begin + 4 * draw(st.integers(0, (end - begin) // 4 - 1))
    bad = struct.pack("<f", draw(st.sampled_from([float("nan"), float("inf"), float("-inf")])))
    return join_safetensors(header, data[:i] + bad + data[i + 4:])


def run_fuzz(strategy, target):
    """Run `target(example)` (which returns check()'s outcome) on every example under the memory
    cap; -> Tally. Asserts every example ran and both outcomes occurred."""
    tally = Tally()

    @FUZZ
    @given(strategy)
    def fuzz(example):
        tally.add(target(example))

    fuzz()
    assert tally.total >= FUZZ.max_examples, tally.counts
    assert tally.counts["UserError"] > 0, tally.counts
    return tally


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt") / "c"
    ckpt.save_checkpoint(tiny(), folder)
    return folder


def _copy_with(folder, name, data: bytes, work):
    """A copy `work` of `folder` (made once) whose file `name` holds `data`."""
    if not work.exists():
        shutil.copytree(folder, work)
    (work / name).write_bytes(data)
    return work


def _load_with(folder, name, data: bytes, work):
    """check() of zeroformer.load of a copy of `folder` whose file `name` holds `data`."""
    _copy_with(folder, name, data, work)
    return check(lambda: zeroformer.load(work), work / name)


def test_fuzz_safetensors(model_folder, tmp_path):
    valid = (model_folder / ckpt.MODEL_FILE).read_bytes()
    run_fuzz(safetensors_variants(valid),
             lambda b: _load_with(model_folder, ckpt.MODEL_FILE, b, tmp_path / "c"))


def test_fuzz_config_json(model_folder, tmp_path):
    valid = json.loads((model_folder / ckpt.CONFIG_FILE).read_text())
    run_fuzz(json_file_variants(valid),
             lambda b: _load_with(model_folder, ckpt.CONFIG_FILE, b, tmp_path / "c"))


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory):
    """Small Hugging Face folders (llama, gpt2, bert) written by our exporters."""
    from zeroformer.io import hf_bert, hf_gpt2, hf_llama

    root = tmp_path_factory.mktemp("hf")
    llama = tiny(position="rope", norm="rmsnorm", activation="silu", gated_ffn=True, bias=False,
                 tie_embeddings=False)
    gpt2 = tiny(activation="gelu_tanh")
    bert = build_model(preset("bert-base", vocab_size=37, n_layer=1, d_model=16, n_head=2,
                              d_ff=32, max_seq_len=8))
    return [exporter.export(m, root / name) for name, m, exporter in
            (("llama", llama, hf_llama), ("gpt2", gpt2, hf_gpt2), ("bert", bert, hf_bert))]


def test_fuzz_hf_config_json(hf_folders, tmp_path):
    configs = [json.loads((f / "config.json").read_text()) for f in hf_folders]

    @st.composite
    def variants(draw):
        k = draw(st.integers(0, len(hf_folders) - 1))
        return k, draw(json_file_variants(configs[k]))

    run_fuzz(variants(), lambda kb: _load_with(hf_folders[kb[0]], "config.json", kb[1],
                                               tmp_path / f"hf{kb[0]}"))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nonfinite_weights_are_refused_naming_the_tensor(model_folder, tmp_path, value):
    """Every tensor, one non-finite value at a time: a UserError naming the file and tensor."""
    header, data = split_safetensors((model_folder / ckpt.MODEL_FILE).read_bytes())
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        i = begin + (end - begin) // 8 * 4
        bad = data[:i] + struct.pack("<f", value) + data[i + 4:]
        work = _copy_with(model_folder, ckpt.MODEL_FILE, join_safetensors(header, bad),
                          tmp_path / "c")
        with pytest.raises(UserError) as e:
            zeroformer.load(work)
        assert name in str(e.value) and ckpt.MODEL_FILE in str(e.value), str(e.value)


def test_integer_weights_are_refused(model_folder, tmp_path):
    """A weight stored as integers where the model holds floats: a wrong dtype, refused."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(model_folder / ckpt.MODEL_FILE))
    name = sorted(state)[0]
    state[name] = state[name].to(torch.int32)
    work = tmp_path / "c"
    shutil.copytree(model_folder, work)
    save_file(state, str(work / ckpt.MODEL_FILE))
    with pytest.raises(UserError, match=f"{name}.*int32"):
        zeroformer.load(work)


# -- a training run: latest.json, trainer_state.json / .safetensors, optimizer.safetensors --------
RUN_FILES = [ckpt.STATE_FILE, ckpt.STATE_TENSORS_FILE, ckpt.OPTIMIZER_FILE]


def _toy_trainer(out):
    recipe = recipes.get("toy")
    tcfg = recipe.train_config(max_steps=3, save_every=3, eval_every=0, log_every=1,
                               progress=False, device="cpu", dtype="fp32")
    seed_everything(tcfg.seed)
    return Trainer(recipe.build(recipe.model_config(), tcfg), tcfg, out, meta={"recipe": "toy"})


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    _toy_trainer(out).fit()
    return out


@st.composite
def run_variants(draw, files: dict):
    """(file name, hostile bytes) for one file of a run folder."""
    name = draw(st.sampled_from(sorted(files)))
    valid = files[name]
    if name.endswith(".json"):
        return name, draw(json_file_variants(json.loads(valid)))
    if draw(st.booleans()):
        return name, draw(byte_mutations(valid))
    header, data = split_safetensors(valid)
    return name, join_safetensors(draw(json_mutations(header)), data)


def test_fuzz_trainer_state_and_latest_json(toy_run, tmp_path):
    step = ckpt.latest_checkpoint(toy_run)
    files = {f"{step.name}/{n}": (step / n).read_bytes() for n in RUN_FILES}
    files[ckpt.LATEST_FILE] = (toy_run / ckpt.LATEST_FILE).read_bytes()
    work = tmp_path / "run"
    shutil.copytree(toy_run, work)
    trainer = _toy_trainer(work)  # one trainer, resumed again and again

    def target(example):
        name, data = example
        (work / name).write_bytes(data)
        try:
            return check(trainer.resume, work / name, str(work))
        finally:
            (work / name).write_bytes(files[name])

    run_fuzz(run_variants(files), target)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_all_finite_is_exact_when_the_sum_overflows(dtype):
    """The fast finite check (a finite sum) falls back to the exact one on overflow."""
    from zeroformer.io.files import all_finite

    big = torch.full((4,), torch.finfo(dtype).max, dtype=dtype)
    assert all_finite(big) and all_finite(-big)
    for bad in (float("nan"), float("inf"), float("-inf")):
        t = big.clone()
        t[2] = bad
        assert not all_finite(t) and not all_finite(torch.tensor([1.0, bad], dtype=dtype))
