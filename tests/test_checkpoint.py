"""Checkpoints: bit-exact round trip, no pickle, atomic writes (zeroformer/io/checkpoint.py)."""

import json

import pytest
import torch

import zeroformer
from requires import require_package
from zeroformer.config import preset
from zeroformer.errors import UserError
from zeroformer.io import checkpoint as ckpt


def tiny_model(seed=0, **over):
    from zeroformer.models import build_model

    torch.manual_seed(seed)
    cfg = preset("tiny", vocab_size=37, n_layer=2, d_model=32, n_head=4, d_ff=64, max_seq_len=16,
                 **over)
    return build_model(cfg)


def trained_optimizer(model, steps=3):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.9), weight_decay=0.1)
    for i in range(steps):
        x = torch.randint(0, model.config.vocab_size, (2, 8), generator=torch.Generator().manual_seed(i))
        model(x).float().logsumexp(-1).mean().backward()
        opt.step()
        opt.zero_grad()
    return opt


def assert_same_state(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("tie", [True, False])
def test_model_round_trips_bit_exactly(tmp_path, tie):
    model = tiny_model(tie_embeddings=tie)
    trained_optimizer(model)  # weights that are not the init
    ckpt.save_checkpoint(model, tmp_path / "c")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["config.json", "model.safetensors"]
    loaded = zeroformer.load(tmp_path / "c")
    assert loaded.config == model.config
    assert_same_state(model.state_dict(), loaded.state_dict())
    x = torch.randint(0, 37, (2, 10))
    model.eval()
    assert torch.equal(model(x), loaded(x))


def test_bf16_weights_stay_bf16_and_dtype_argument(tmp_path):
    model = tiny_model().to(torch.bfloat16)
    ckpt.save_checkpoint(model, tmp_path / "c")
    loaded = ckpt.load_checkpoint(tmp_path / "c")
    assert_same_state(model.state_dict(), loaded.state_dict())
    as32 = ckpt.load_checkpoint(tmp_path / "c", dtype="fp32")
    assert next(as32.parameters()).dtype == torch.float32
    for k, v in as32.state_dict().items():
        assert torch.equal(v.bfloat16(), model.state_dict()[k]), k

def test_optimizer_and_trainer_state_round_trip(tmp_path):
    model = tiny_model()
    opt = trained_optimizer(model)
    rng = torch.get_rng_state()
    ckpt.save_checkpoint(model, tmp_path / "c", optimizer=opt, trainer_state={"step": 3},
                         extra_tensors={"rng.torch": rng})
    model2 = tiny_model(seed=1)
    ckpt.load_weights(model2, tmp_path / "c")
    opt2 = torch.optim.AdamW(model2.parameters(), lr=5.0)
    ckpt.load_optimizer(opt2, tmp_path / "c")
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for pid in a["state"]:
        assert_same_state(a["state"][pid], b["state"][pid])
    state, tensors = ckpt.load_trainer_state(tmp_path / "c")
    assert state == {"step": 3}
    assert tensors["rng.torch"].dtype == torch.uint8 and torch.equal(tensors["rng.torch"], rng)
    # one more identical step from both gives identical weights
    for m, o in ((model, opt), (model2, opt2)):
        m(torch.arange(8)[None]).sum().backward()
        o.step()
    assert_same_state(model.state_dict(), model2.state_dict())


def test_tokenizer_is_saved_and_attached(tmp_path):
    from zeroformer.tokenizers import CharTokenizer

    tok = CharTokenizer.train("hello world, a tiny corpus of thirty-odd chars!?")
    model = tiny_model()
    ckpt.save_checkpoint(model, tmp_path / "c", tokenizer=tok)
    loaded = zeroformer.load(tmp_path / "c")
    assert loaded.tokenizer.encode("hello") == tok.encode("hello")


class _SideEffect:
    """Unpickling this calls open(marker, "w"): a payload that leaves a file when it runs."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_the_pickle_payload_really_runs_code(tmp_path):
    """Sanity check of the test below: unpickled, the payload creates its marker file."""
    import pickle

    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(_SideEffect(marker))).close()
    assert marker.exists()


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt"])
def test_pickle_files_are_refused_without_running_them(tmp_path, capsys, name):
    import pickle

    from zeroformer.cli import main

    marker = tmp_path / "the-pickle-ran"
    folder = tmp_path / "c"
    folder.mkdir()
    tiny_model().config.save(folder / "config.json")
    (folder / name).write_bytes(pickle.dumps({"model": _SideEffect(marker)}))
    for path in (folder, folder / name):
        with pytest.raises(UserError, match="pickle"):
            zeroformer.load(path)
    with pytest.raises(UserError, match="pickle"):
        ckpt.load_checkpoint(folder)
    for path in (folder, folder / name):
        capsys.readouterr()
        assert main(["generate", "--model", str(path), "--prompt", "hi"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("zeroformer: error:") and err.count("\n") == 1, err
        assert "refusing to load a pickle" in err, err
    assert not marker.exists()


def _cut(path, size):
    with open(path, "r+b") as f:
        f.truncate(size)


def _huge_tensor_header(path):
    """A valid-looking header that declares a 4 TiB tensor in a file of a few bytes."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [1 << 40],
                               "data_offsets": [0, 4 << 40]}}).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 16)


def _huge_header_length(path):
    path.write_bytes((1 << 62).to_bytes(8, "little") + b"{}")


@pytest.mark.parametrize("damage", [
    lambda p: _cut(p, p.stat().st_size - 100), lambda p: _cut(p, p.stat().st_size // 2),
    lambda p: _cut(p, 100), lambda p: _cut(p, 5), _huge_tensor_header, _huge_header_length,
], ids=["end-100", "half", "100-bytes", "5-bytes", "huge-tensor", "huge-header"])
def test_truncated_model_safetensors_is_refused(tmp_path, capsys, damage):
    from zeroformer.cli import main

    ckpt.save_checkpoint(tiny_model(), tmp_path / "c")
    weights = tmp_path / "c" / "model.safetensors"
    damage(weights)
    for path in (tmp_path / "c", weights):
        with pytest.raises(UserError, match="model.safetensors: not a (valid|readable) safetensors"):
            zeroformer.load(path)
    assert main(["generate", "--model", str(tmp_path / "c"), "--prompt", "hi"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zeroformer: error:") and err.count("\n") == 1, err


def test_truncated_hf_folder_is_refused(tmp_path):
    transformers = require_package("transformers")
    cfg = transformers.GPT2Config(vocab_size=40, n_positions=16, n_embd=32, n_layer=1, n_head=2)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(tmp_path / "hf")
    weights = tmp_path / "hf" / "model.safetensors"
    zeroformer.load(tmp_path / "hf")  # whole, it loads
    _cut(weights, weights.stat().st_size - 1)
    with pytest.raises(UserError, match="model.safetensors: not a (valid|readable) safetensors"):
        zeroformer.load(tmp_path / "hf")


def test_run_folder_latest_and_pruning(tmp_path):
    model = tiny_model()
    for step in (2, 4, 6):
        ckpt.save_run_checkpoint(tmp_path, step, model, trainer_state={"step": step})
    assert json.loads((tmp_path / "latest.json").read_text()) == {"step": 6, "path": "step-00000006"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.json", "step-00000004",
                                                          "step-00000006"]
    assert ckpt.latest_checkpoint(tmp_path).name == "step-00000006"
    zeroformer.load(tmp_path)  # a run folder loads its newest checkpoint


def test_crash_while_saving_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model = tiny_model()
    ckpt.save_run_checkpoint(tmp_path, 1, model, trainer_state={"step": 1})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)

    def crash(*a, **k):  # the process "dies" after model.safetensors and config.json exist
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(ckpt, "write_json_atomic", crash)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_run_checkpoint(tmp_path, 2, model, trainer_state={"step": 2})
    monkeypatch.undo()
    assert json.loads((tmp_path / "latest.json").read_text())["step"] == 1
    assert not (tmp_path / "step-00000002").exists()
    assert_same_state(before, zeroformer.load(tmp_path).state_dict())


def test_half_written_folder_from_a_killed_process_is_ignored(tmp_path):
    model = tiny_model()
    ckpt.save_run_checkpoint(tmp_path, 1, model)
    junk = tmp_path / ".step-00000002.tmp-99999"
    junk.mkdir()
    (junk / "model.safetensors").write_bytes(b"\x00" * 10)  # truncated write
    assert ckpt.latest_checkpoint(tmp_path).name == "step-00000001"
    zeroformer.load(tmp_path)
    ckpt.save_run_checkpoint(tmp_path, 3, model)
    assert not junk.exists()


def test_missing_weights_and_mismatched_config_are_user_errors(tmp_path):
    model = tiny_model()
    ckpt.save_checkpoint(model, tmp_path / "c")
    cfg = json.loads((tmp_path / "c" / "config.json").read_text())
    cfg["d_model"] = 64
    (tmp_path / "c" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="do not match"):
        ckpt.load_checkpoint(tmp_path / "c")
    (tmp_path / "c" / "model.safetensors").unlink()
    with pytest.raises(UserError):
        zeroformer.load(tmp_path / "c")
