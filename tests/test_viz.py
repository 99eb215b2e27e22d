"""Pictures: the PNG holds the picture, the data drawn is the data named (the paper's positional
encodings, transformers' own attention probabilities, the run's logged losses)."""

import json
import math
import struct

import numpy as np
import pytest
import torch

from requires import require_package
from zeroformer import preset
from zeroformer.cli import main
from zeroformer.inference.viz import (attention_weights, plot_attention, plot_loss,
                                      plot_positional_encoding)
from zeroformer.models import build_model


@pytest.fixture
def drawn(monkeypatch):
    """Record what reaches matplotlib: every imshow array and every plotted line, as drawn."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    calls = {"imshow": [], "plot": []}
    imshow, plot = Axes.imshow, Axes.plot

    def rec_imshow(self, X, *a, **k):
        calls["imshow"].append((np.array(X, dtype=np.float64), k))
        return imshow(self, X, *a, **k)

    def rec_plot(self, *a, **k):
        calls["plot"].append(([np.asarray(x, dtype=np.float64) for x in a], k))
        return plot(self, *a, **k)

    monkeypatch.setattr(Axes, "imshow", rec_imshow)
    monkeypatch.setattr(Axes, "plot", rec_plot)
    return calls


def png_size_and_colours(path):
    """(width, height) from the PNG header, and how many distinct colours its pixels use."""
    from matplotlib.image import imread

    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR"
    w, h = struct.unpack(">II", raw[16:24])
    pixels = imread(path)
    assert pixels.shape[:2] == (h, w)
    return (w, h), len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0))


def test_positional_encoding_png(tmp_path, drawn):
    """The heatmap is section 3.5's table: PE(pos, 2i) = sin(pos / 10000^(2i/d)),
    PE(pos, 2i+1) = cos(pos / 10000^(2i/d)), written out here from the paper, not from our code."""
    out = plot_positional_encoding(tmp_path / "pe.png", 50, 32)
    (array, kw), = drawn["imshow"]
    want = np.zeros((50, 32))
    for pos in range(50):
        for i in range(16):
            want[pos, 2 * i] = math.sin(pos / 10000 ** (2 * i / 32))
            want[pos, 2 * i + 1] = math.cos(pos / 10000 ** (2 * i / 32))
    np.testing.assert_allclose(array, want, atol=1e-6)
    assert (kw["vmin"], kw["vmax"]) == (-1, 1)
    size, colours = png_size_and_colours(out)
    assert size == (880, 550)  # figsize (8, 5) at 110 dpi
    assert colours > 100       # a diverging heatmap, not an empty figure


def test_attention_pictures_show_transformers_attention(tmp_path, drawn):
    """Our attention weights of a GPT-2 read from an HF folder equal transformers' own
    `output_attentions` (eager attention) for every layer and head; each head's picture is them."""
    transformers = require_package("transformers")
    import zeroformer

    cfg = transformers.GPT2Config(vocab_size=50, n_positions=16, n_embd=32, n_layer=2, n_head=4)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # larger weights than the init: attention far from uniform
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    hf.save_pretrained(tmp_path / "hf")
    ref = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf",
                                                       attn_implementation="eager").eval()
    ids = torch.randint(0, 50, (1, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = ref(ids, output_attentions=True).attentions
    layers = attention_weights(zeroformer.load(tmp_path / "hf"), ids)
    assert len(layers) == len(want) == 2
    for got, w in zip(layers, want):
        torch.testing.assert_close(got, w[0], atol=1e-5, rtol=1e-4)
    uniform = 1 / torch.arange(1, 10).view(1, 9, 1)
    assert (layers[1] - uniform).abs().tril().max() > 0.1  # far from uniform attention
    plot_attention(layers[1], list("abcdefghi"), tmp_path / "a.png")
    assert len(drawn["imshow"]) == 4
    for head, (array, kw) in enumerate(drawn["imshow"]):
        np.testing.assert_array_equal(array, layers[1][head].numpy())
        assert (kw["vmin"], kw["vmax"]) == (0, 1)
    size, colours = png_size_and_colours(tmp_path / "a.png")
    assert size == (4 * 330, 330) and colours > 20  # 4 heads of 3 x 3 inches at 110 dpi


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


def test_loss_curve_from_run_folder(tmp_path, drawn):
    ck = tmp_path / "step-00000002"
    ck.mkdir()
    (ck / "trainer_state.json").write_text(json.dumps(
        {"log": [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.5}, {"step": 2, "val_loss": 2.7}]}))
    (tmp_path / "latest.json").write_text(json.dumps({"step": 2, "path": ck.name}))
    out = plot_loss(tmp_path, tmp_path / "loss.png")
    lines = {k["label"]: [list(x) for x in xy] for xy, k in drawn["plot"]}
    assert lines == {"loss": [[1, 2], [3.0, 2.5]], "val_loss": [[2], [2.7]]}
    size, colours = png_size_and_colours(out)
    assert size == (770, 440) and colours > 10


def test_viz_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["viz", "loss", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zeroformer: error:") and err.count("\n") == 1
    assert main(["viz", "positions", "--out", str(tmp_path / "p.png"), "--d-model", "16"]) == 0
