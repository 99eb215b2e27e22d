"""Pictures for learning: attention maps, the positional-encoding table, loss curves (matplotlib).

- `plot_positional_encoding`: the sinusoidal table PE (positions x dimensions) as a heatmap; the
  stripes of decreasing frequency along d are the wavelengths 2π·10000^(2i/d) of section 3.5.
- `attention_weights` / `attention_for_text` / `plot_attention`: softmax(QK^T/sqrt(d_k)) of every
  head of a layer for one input, read from the reference attention path
  (MultiHeadAttention.keep_weights).
- `plot_loss`: training and validation loss against the step, from a run's trainer_state.json.
Every function writes a PNG and returns its path.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..errors import UserError


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_positional_encoding(out, max_len: int = 100, d_model: int = 128,
                             layout: str = "interleaved") -> Path:
    from ..nn.positions import sinusoidal_table

    if not (max_len >= 1 and d_model >= 2 and d_model % 2 == 0 and max_len * d_model <= 10 ** 7):
        raise UserError(f"--max-len {max_len} --d-model {d_model}: need max_len >= 1, an even "
                        "d_model >= 2 and a table of at most 10^7 values")
    plt = _pyplot()
    table = sinusoidal_table(max_len, d_model, layout)
    fig, ax = plt.subplots(figsize=(8, 5))
    im = ax.imshow(table.numpy(), aspect="auto", cmap="RdBu", vmin=-1, vmax=1)
    ax.set_xlabel("dimension (2i: sin, 2i+1: cos)")
    ax.set_ylabel("position")
    ax.set_title(f"Sinusoidal positional encoding, d_model={d_model}")
    fig.colorbar(im, ax=ax)
    return _save(fig, out)


@torch.no_grad()
def attention_weights(model, input_ids: torch.Tensor, **inputs) -> list[torch.Tensor]:
    """Self-attention weights of every layer for one input: a list of (heads, T, T) tensors
    (encoder–decoder models: the decoder's self-attention after the encoder's)."""
    from ..nn.attention import MultiHeadAttention

    layers = [m for m in model.modules() if isinstance(m, MultiHeadAttention) and not m.cross]
    was_training = model.training
    model.eval()
    for m in layers:
        m.keep_weights = True
    try:
        model(input_ids, **inputs)
        return [m.last_weights[0].float() for m in layers]
    finally:
        for m in layers:
            m.keep_weights, m.last_weights = False, None
        model.train(was_training)


def attention_for_text(model, tok, text: str) -> tuple[list[torch.Tensor], list[str]]:
    """(attention_weights of `text` encoded by `tok`, one string per token); an
    encoder-decoder reads the text on both sides."""
    ids = tok.encode(text)
    if not ids:
        raise UserError("--text encodes to no tokens")
    x = torch.tensor([ids])
    inputs = {"tgt_ids": x} if model.config.arch == "encoder_decoder" else {}
    return attention_weights(model, x, **inputs), [tok.decode([i]) for i in ids]


def plot_attention(weights: torch.Tensor, tokens: list[str], out, title: str = "") -> Path:
    """weights: (heads, T, T) -> a grid of heatmaps, query rows x key columns."""
    plt = _pyplot()
    h = weights.size(0)
    cols = min(h, 4)
    rows = math.ceil(h / cols)
    size = max(3.0, 0.25 * len(tokens))
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= h:
            ax.axis("off")
            continue
        ax.imshow(weights[i].numpy(), cmap="viridis", vmin=0, vmax=1)
        ax.set_title(f"head {i}")
        if len(tokens) <= 40:
            ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
            ax.set_yticks(range(len(tokens)), tokens, fontsize=7)
    fig.suptitle(title)
    return _save(fig, out)


def read_run_log(run) -> list[dict]:
    """The `log` list of a run folder's newest trainer_state.json (or of a checkpoint folder)."""
    from ..io.checkpoint import STATE_FILE, latest_checkpoint, read_json

    run = latest_checkpoint(run) or Path(run)
    if not (run / STATE_FILE).exists():
        raise UserError(f"{run}: no {STATE_FILE} (not a training run or checkpoint folder)")
    return read_json(run / STATE_FILE).get("log", [])


def plot_loss(run, out) -> Path:
    plt = _pyplot()
    log = read_run_log(run)
    fig, ax = plt.subplots(figsize=(7, 4))
    keys = sorted({k for e in log for k in e if "loss" in k})
    if not keys:
        raise UserError(f"{run}: the run has no logged loss yet")
    for key in keys:
        pts = [(e["step"], e[key]) for e in log if key in e]
        ax.plot([s for s, _ in pts], [v for _, v in pts], marker="." if len(pts) < 50 else None,
                label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, out)


def _save(fig, out) -> Path:
    """Write `fig` to `out`, whose suffix names the format (.png, .svg, .pdf, ...)."""
    out, plt = Path(out), _pyplot()
    kinds = fig.canvas.get_supported_filetypes()
    if out.suffix.lower().lstrip(".") not in kinds:
        plt.close(fig)
        raise UserError(f"--out {out}: give a picture file name ending in "
                        f"{', '.join('.' + k for k in sorted(kinds))}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(out, dpi=110)
    except OSError as e:
        raise UserError(f"--out {out}: cannot write it ({e.strerror or e})") from None
    finally:
        plt.close(fig)
    return out
