"""Pictures: they are written, and the attention they show is the model's real attention."""

import json

import pytest
import torch

from zeroformer import preset
from zeroformer.cli import main
from zeroformer.models import build_model
from zeroformer.inference.viz import attention_weights, plot_attention, plot_loss, plot_positional_encoding


def test_positional_encoding_png(tmp_path):
    out = plot_positional_encoding(tmp_path / "pe.png", 50, 32)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_attention_weights_are_causal_distributions(tmp_path):
    torch.manual_seed(0)
    m = build_model(preset("tiny"))
    ids = torch.randint(0, 256, (1, 9))
    layers = attention_weights(m, ids)
    assert len(layers) == m.config.n_layer
    for w in layers:
        assert w.shape == (m.config.n_head, 9, 9)
        assert torch.allclose(w.sum(-1), torch.ones(m.config.n_head, 9), atol=1e-5)
        assert (w.triu(1) == 0).all()
    # reading the weights must not change what the model computes, nor leave the flag on
    assert all(not mod.keep_weights for mod in m.modules() if hasattr(mod, "keep_weights"))
    assert plot_attention(layers[0], list("abcdefghi"), tmp_path / "a.png").exists()


def test_loss_curve_from_run_folder(tmp_path):
    ck = tmp_path / "step-00000002"
    ck.mkdir()
    (ck / "trainer_state.json").write_text(json.dumps(
        {"log": [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.5}, {"step": 2, "val_loss": 2.7}]}))
    (tmp_path / "latest.json").write_text(json.dumps({"step": 2, "path": ck.name}))
    assert plot_loss(tmp_path, tmp_path / "loss.png").exists()


def test_viz_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["viz", "loss", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zeroformer: error:") and err.count("\n") == 1
    assert main(["viz", "positions", "--out", str(tmp_path / "p.png"), "--d-model", "16"]) == 0
