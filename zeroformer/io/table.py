"""A format is a name table read in both directions, over the one reader and writer (`files.py`).

A `Table` row pairs a foreign tensor name with ours; `{i}`, `{w}`, ... stand for one dot-free
part (a layer number, weight/bias) and must appear on both sides:

    Row("h.{i}.ln_1.{w}", "blocks.{i}.norm_attn.{w}")
    Row("h.{i}.attn.c_attn.{w}", ("blocks.{i}.self_attn.q_proj.{w}", ...k, ...v), conv1d_qkv)

A row may name several of ours (a fused tensor) and carry a `Transform`: `load(t, cfg)` makes
ours from theirs (a tuple for several), `save(t, cfg)` is its inverse. Body rows sit under the
format's `prefix` ('transformer.', 'model.', 'bert.'); `top` rows (lm_head, heads) do not.
On import the prefix is optional, names matching `ignore` (buffers, copies) are skipped, and
any other unknown name is an error. Where two rows give the same name of ours (Marian's three
copies of a shared embedding), import reads the first present and export writes the first row.
A row whose foreign name is None marks a tensor of ours that the format does not store.

`Family` binds a table to config translation: `Family.load(folder)` and `Family.export(model,
out)` are the whole Hugging Face importer/exporter for every model_type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

from ..errors import UserError
from . import files


# Hugging Face activation names <-> ours (config.json's activation_function / hidden_act)
ACT_IN = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh",
          "gelu": "gelu", "relu": "relu", "silu": "silu", "swish": "silu"}
ACT_OUT = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu", "silu": "silu"}


class Transform(NamedTuple):
    load: Callable   # (their tensor, cfg) -> our tensor, or a tuple of ours
    save: Callable   # (our tensor or tuple, cfg) -> their tensor


def _regex(pattern: str) -> re.Pattern:
    return re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^.]+)", re.escape(pattern)))


class Row:
    def __init__(self, theirs: str | None, ours, transform: Transform | None = None):
        self.theirs, self.transform = theirs, transform
        self.ours = (ours,) if isinstance(ours, str) else tuple(ours)
        self.theirs_rx = _regex(theirs) if theirs is not None else None
        self.ours_rx = [_regex(o) for o in self.ours]


@dataclass
class Table:
    body: list[Row]
    top: list[Row] = field(default_factory=list)
    prefix: str = ""
    ignore: tuple[str, ...] = ()    # regexes of foreign names that are not weights of ours
    legacy: dict = field(default_factory=dict)  # old spelling -> current (read only)

    def rows(self, prefix: str):
        return [(prefix, r) for r in self.body] + [("", r) for r in self.top]

    def to_ours(self, theirs: dict, cfg, source) -> dict:
        out: dict = {}
        for name, t in theirs.items():
            for old, new in self.legacy.items():
                name = name.replace(old, new)
            bare = name[len(self.prefix):] if self.prefix and name.startswith(self.prefix) else name
            match = next(((r, m) for _, r in self.rows("") if r.theirs_rx is not None
                          for m in [r.theirs_rx.fullmatch(bare)] if m), None)
            if match is None:
                if any(re.fullmatch(p, name) for p in self.ignore):
                    continue
                raise UserError(f"{source}: unexpected tensor {name!r} for this config")
            row, m = match
            try:
                values = row.transform.load(t, cfg) if row.transform else t
            except (RuntimeError, ValueError, IndexError) as e:  # a shape the config rules out
                raise UserError(f"{source}: tensor {name!r} of shape {tuple(t.shape)} does not "
                                f"fit the config ({str(e).splitlines()[0][:200]})") from None
            values = values if isinstance(values, tuple) else (values,)
            for pattern, v in zip(row.ours, values):
                out.setdefault(pattern.format(**m.groupdict()), v)
        return out

    def to_theirs(self, ours: dict, cfg, bare: bool = False) -> dict:
        """Our (untied) state -> foreign names; `bare` drops the body prefix (a headless model)."""
        out, done = {}, set()
        rows = self.rows("" if bare else self.prefix)
        for name in ours:
            if name in done:
                continue
            match = next(((p, r, m) for p, r in rows for rx in r.ours_rx
                          for m in [rx.fullmatch(name)] if m), None)
            if match is None:
                raise UserError(f"cannot export tensor {name!r} in this format")
            prefix, row, m = match
            names = [o.format(**m.groupdict()) for o in row.ours]
            done.update(names)
            if row.theirs is None:
                continue
            values = tuple(ours[n] for n in names)
            t = row.transform.save(values if len(values) > 1 else values[0], cfg) \
                if row.transform else values[0]
            out[prefix + row.theirs.format(**m.groupdict())] = t
        return out


@dataclass
class Family:
    """One Hugging Face model_type: config both ways + a table (a Table, or cfg -> Table)."""

    config_from_hf: Callable   # (config.json dict, tensor names, source) -> ModelConfig
    config_to_hf: Callable     # (ModelConfig, dtype name) -> config.json dict (raises if not fit)
    table: Table | Callable
    bare: Callable = lambda hf_config: False   # export without the body prefix?

    def table_for(self, cfg) -> Table:
        return self.table if isinstance(self.table, Table) else self.table(cfg)

    def load(self, path, dtype=None):
        """A Hugging Face folder -> our model in eval mode (fp32 unless `dtype`), `.tokenizer` set
        when the folder has a tokenizer we read."""
        weights, source = files.find_weights(path), Path(path) / "config.json"
        names = {n for f in weights for n in files.safetensors_header(f) if n != "__metadata__"}
        raw = files.read_json(source)
        try:  # before any tensor
            cfg = self.config_from_hf(raw, names, source)
        except UserError as e:
            raise UserError(str(e) if str(source) in str(e) else f"{source}: {e}") from None
        except (TypeError, ValueError, AttributeError, KeyError, ZeroDivisionError) as e:
            raise UserError(f"{source}: a value of the wrong type or range ({e})") from None
        model = files.build_checked(cfg, *files.stored_sizes(weights), source)
        state = self.table_for(cfg).to_ours(files.read_weights(weights), cfg, path)
        model = files.load_strict(model, state, path, dtype)
        files.attach_tokenizer(model, path)
        return model

    def export(self, model, out):
        """Write `model` as a Hugging Face folder: config.json, model.safetensors, and the
        tokenizer's tokenizer.json when the model carries one."""
        cfg = model.config
        hf = self.config_to_hf(cfg, str(next(model.parameters()).dtype).replace("torch.", ""))
        tensors = self.table_for(cfg).to_theirs(files.untied_state(model), cfg, bare=self.bare(hf))
        tokenizer = model.tokenizer

        def fill(tmp):
            files.write_safetensors(tmp / "model.safetensors", tensors)
            files.write_json_atomic(tmp / "config.json", hf)
            if tokenizer is not None:
                tokenizer.save(tmp / "tokenizer.json")

        return files.write_folder(out, fill)
