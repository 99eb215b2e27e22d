"""Pictures for learning: attention maps, the positional-encoding table, loss curves (matplotlib).

- `plot_positional_encoding`: the sinusoidal table PE (positions x dimensions) as a heatmap; the
  stripes of decreasing frequency along d are the wavelengths 2π·10000^(2i/d) of section 3.5.
- `attention_weights` / `attention_for_text` / `plot_attention`: softmax(QK^T/sqrt(d_k)) of every
  head of a layer for one input, read from the reference attention path (trace.py:
  capture_attention), for any stack (self, encoder, decoder, cross); `attention_over_run`: one
  head at every checkpoint of a training run (how attention forms while training).
- `plot_loss`: training and validation loss against the step, from a run's trainer_state.json.
Every function writes a PNG and returns its path.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..errors import UserError
from .trace import STACKS, capture_attention, run_trace


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


def attention_weights(model, input_ids: torch.Tensor, **inputs) -> list[torch.Tensor]:
    """Self-attention weights of every layer for one input: a list of (heads, T, T) tensors
    (encoder–decoder models: the decoder's self-attention after the encoder's)."""
    stacks, _ = capture_attention(model, lambda: model(input_ids, **inputs))
    return [w for s in ("self", "encoder", "decoder") for w in stacks.get(s, [])]


def default_stack(model) -> str:
    """The attention a picture shows unless told: cross-attention for a translator."""
    return "cross" if model.config.arch == "encoder_decoder" else "self"


def pick(layers: list[torch.Tensor], stack: str, layer: int, head: int | None) -> torch.Tensor:
    """layers[layer] (heads, T_q, T_k), or its one head (1, T_q, T_k); UserError when out of
    range."""
    if not -len(layers) <= layer < len(layers):
        raise UserError(f"--layer {layer}: the {stack} attention has {len(layers)} layers")
    w = layers[layer]
    if head is None:
        return w
    if not -w.size(0) <= head < w.size(0):
        raise UserError(f"--head {head}: the model has {w.size(0)} heads")
    return w[head].unsqueeze(0)


def attention_for_text(model, tok, text: str, stack: str | None = None, target=None,
                       max_tokens: int = 64):
    """-> (stack's layers [(heads, T_q, T_k)], query tokens, key tokens) for `text` fed as
    trace.py says (a translator: text = source, `target` or its greedy translation)."""
    stack = stack or default_stack(model)
    tr = run_trace(model, tok, text, target, max_tokens)
    if stack not in tr.attention:
        raise UserError(f"this model has no {stack!r} attention (it has: "
                        f"{', '.join(tr.attention)})")
    _, q_side, k_side = STACKS[stack]
    return (tr.attention[stack], token_strings(tok, tr.sides[q_side]),
            token_strings(tok, tr.sides[k_side]))


def token_strings(tok, ids: list[int]) -> list[str]:
    """Each token as its text (tok.decode([id]))."""
    return [tok.decode([i]) for i in ids]


def run_checkpoints(run) -> list[tuple[int, Path]]:
    """[(step, folder)] of a training run's step-* checkpoints, oldest first."""
    from ..io.checkpoint import CONFIG_FILE

    found = sorted(p for p in Path(run).glob("step-*") if (p / CONFIG_FILE).is_file())
    if not found:
        raise UserError(f"{run}: no step-* checkpoints (not a training run folder)")
    return [(int(p.name.split("-")[-1]), p) for p in found]


def attention_over_run(run, text: str, stack: str | None, layer: int, head: int,
                       target=None, max_tokens: int = 64):
    """One head of one layer for `text` at every checkpoint of a run -> ([(step, (T_q, T_k))],
    query tokens, key tokens). A translator without `target` reads, at every step, the greedy
    translation of the newest checkpoint (the same tokens everywhere)."""
    from ..io.loading import load_model

    steps = run_checkpoints(run)
    maps, labels = [], None
    for step, folder in reversed(steps):
        model = load_model(folder)
        if model.tokenizer is None:
            raise UserError(f"{folder}: the checkpoint has no tokenizer")
        tok = model.tokenizer
        if target is None and model.config.arch == "encoder_decoder":
            target = run_trace(model, tok, text, None, max_tokens).sides["target"][1:]
        layers, q, k = attention_for_text(model, tok, text, stack, target, max_tokens)
        maps.append((step, pick(layers, stack or default_stack(model), layer, head)[0]))
        labels = labels or (q, k)
    return maps[::-1], labels[0], labels[1]


def plot_attention(weights: torch.Tensor, tokens: list[str], out, title: str = "",
                   panel_titles: list[str] | None = None,
                   key_tokens: list[str] | None = None) -> Path:
    """weights: (n, T_q, T_k) -> a grid of n heatmaps, query rows x key columns (default panels:
    the heads of one layer; `key_tokens` when the keys are another text, e.g. cross-attention)."""
    plt = _pyplot()
    h = weights.size(0)
    key_tokens = tokens if key_tokens is None else key_tokens
    panel_titles = panel_titles or [f"head {i}" for i in range(h)]
    cols = min(h, 4)
    rows = math.ceil(h / cols)
    size = max(3.0, 0.25 * max(len(tokens), len(key_tokens)))
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= h:
            ax.axis("off")
            continue
        ax.imshow(weights[i].numpy(), cmap="viridis", vmin=0, vmax=1)
        ax.set_title(panel_titles[i])
        if max(len(tokens), len(key_tokens)) <= 40:
            ax.set_xticks(range(len(key_tokens)), key_tokens, rotation=90, fontsize=7)
            ax.set_yticks(range(len(tokens)), tokens, fontsize=7)
    fig.suptitle(title)
    return _save(fig, out, top=0.93 if title else 1.0)


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


def _save(fig, out, top: float = 1.0) -> Path:
    """Lay out (the panels below `top`, leaving room for a figure title) and write `fig` to `out`,
    whose suffix names the format (.png, .svg, .pdf, ...)."""
    out, plt = Path(out), _pyplot()
    kinds = fig.canvas.get_supported_filetypes()
    if out.suffix.lower().lstrip(".") not in kinds:
        plt.close(fig)
        raise UserError(f"--out {out}: give a picture file name ending in "
                        f"{', '.join('.' + k for k in sorted(kinds))}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout(rect=(0, 0, 1, top))
        fig.savefig(out, dpi=110)
    except OSError as e:
        raise UserError(f"--out {out}: cannot write it ({e.strerror or e})") from None
    finally:
        plt.close(fig)
    return out
