"""Fuzzed command lines: random argument lists (the parser's own commands and flags, hostile
values, hostile files, a tiny real model) to `zeroformer` main, in-process. Each ends with exit
status 0 or 2, never a traceback; on 2, stderr holds exactly one `zeroformer: error:` line.

What would leave the machine or run for minutes is stubbed for the test: `data fetch`
(downloads), `serve` (an HTTP server), `bench` (a benchmark script), the torchrun launch of
`train --nproc` and the training loop itself (`Trainer.fit`; the run's setup and its checks run).
"""

import argparse
import contextlib
import io
import shutil
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, strategies as st
from hostile import FUZZ, Tally, memory_bound

from zeroformer import cli
from zeroformer.config import preset
from zeroformer.errors import UserError
from zeroformer.io import checkpoint as ckpt
from zeroformer.models import build_model
from zeroformer.tokenizers import CharTokenizer


def commands(parser, prefix=()):
    """{command words: (options [(flag, takes a value, choices)], positionals [choices])} of
    every (sub)command of `parser`."""
    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.update(commands(sub, prefix + (name,)))
    if prefix:
        acts = [a for a in parser._actions if not isinstance(a, argparse._SubParsersAction)]
        out[prefix] = ([(s, a.nargs != 0, list(a.choices or []), a.required, a.type)
                        for a in acts for s in a.option_strings[:1]],
                       [list(a.choices or []) for a in acts if not a.option_strings])
    return out


VALUES = ["0", "1", "-1", "2", "7", "10000000000000000000000000000", "1e309", "nan", "inf",
          "-inf", "0.5", "-0.0", "", " ", "x", "toy", "fp32", "bf16", "int4", "cpu", "cuda:9",
          "auto", "true", "none", "{", "{}", "[1]", "-", "--", "é\u0301", "a\x00b", "\udcff",
          "gpt2", "bleu", "ppl", "accuracy", "positions", "attention", "loss", "list", "fetch"]


NUMBERS = ["0", "1", "2", "3", "8", "-1", "-7", "100000", str(10 ** 30), "0.5", "1e-9", "1.5",
           "nan", "inf", "-inf", "1e309", "-0.0"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Paths a fuzzed argument may name: missing, empty, garbage, a folder, a tiny model. A
    command may write over them (convert, tokenizer train --out): `fresh` restores them."""
    root = tmp_path_factory.mktemp("cli") / "pool"
    root.mkdir()
    (root / "empty.txt").write_bytes(b"")
    (root / "junk.bin").write_bytes(b"\x00\xff" * 40)
    (root / "text.txt").write_text("to be or not to be\nthat is the question\n")
    (root / "data.tsv").write_text("a fine film\tpos\ndull\tneg\n")
    (root / "folder").mkdir()
    tok = CharTokenizer.train("abcdefghij klmnopqrstuvwxyz\n")
    torch.manual_seed(0)
    model = build_model(preset("tiny", vocab_size=tok.vocab_size, n_layer=1, d_model=16,
                               n_head=2, d_ff=32, max_seq_len=16))
    ckpt.save_checkpoint(model, root / "model", tokenizer=tok)
    shutil.copytree(root, root.with_name("pristine"))
    return [str(root / n) for n in ("missing", "empty.txt", "junk.bin", "text.txt", "data.tsv",
                                    "folder", "model", "model/config.json",
                                    "model/tokenizer.json", "model/model.safetensors")]


@st.composite
def argvs(draw, table: dict, paths: list):
    """A command with a value for each positional and some flags (plausible or hostile values),
    then a few random edits: a word dropped or inserted, a --key=value override added."""
    command = draw(st.sampled_from(sorted(table)))
    options, positionals = table[command]
    value = st.one_of(st.sampled_from(VALUES), st.sampled_from(paths),
                      st.text(max_size=12), st.integers(-2 ** 70, 2 ** 70).map(str))

    def pick(choices, typ=None):
        if draw(st.integers(0, 5)) == 0:
            return draw(value)
        if choices:
            return draw(st.sampled_from(choices))
        if typ in (int, float):
            return draw(st.sampled_from(NUMBERS[: 9 if typ is int else None]))
        return draw(st.one_of(st.sampled_from(paths), value))

    words = list(command) + [pick(c) for c in positionals]
    chosen = [o for o in options if o[3]] + draw(st.lists(st.sampled_from(options), max_size=5))
    for flag, takes, choices, _, typ in chosen:
        if flag in ("--help", "-h", "--version") and draw(st.integers(0, 9)):
            continue  # help is fine and fast: let most examples go past the parser
        words += [flag, pick(choices, typ)] if takes else [flag]
    for _ in range(draw(st.integers(0, 2))):
        edit = draw(st.integers(0, 2))
        if edit == 0 and len(words) > 1:
            del words[draw(st.integers(1, len(words) - 1))]
        elif edit == 1:
            words.insert(draw(st.integers(0, len(words))), draw(value))
        else:
            key = draw(st.sampled_from(["n_layer", "d_model", "lr", "batch_size", "dtype",
                                        "max_seq_len", "dropout", "block_size", "grad_accum",
                                        "vocab_size", "n_head", "warmup_steps", "nosuch"]))
            words.append(f"--{key}={draw(value)}")
    return words


@pytest.fixture
def stubs(monkeypatch, tmp_path):
    """Stub what would download, serve, benchmark, launch torchrun or train for real."""
    from zeroformer import data, serve
    from zeroformer.cli import cmd_bench, cmd_train
    from zeroformer.train import Trainer

    def no_fetch(name, quiet=False):
        raise UserError(f"data fetch {name}: not in this test")

    monkeypatch.setattr(data, "fetch", no_fetch)
    monkeypatch.setattr(serve, "run", lambda *a, **k: 0)
    monkeypatch.setattr(cmd_bench.runpy, "run_path", lambda *a, **k: None)
    monkeypatch.setattr(cmd_train, "launch", lambda *a, **k: 0)
    monkeypatch.setattr(Trainer, "fit", lambda self, resume=False: {
        "step": 0, "log": [], "checkpoint": None, "stopped": None})
    monkeypatch.setenv("ZEROFORMER_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


def fresh(files):
    """Put the pool of files back as the fixture made it (examples must not see each other)."""
    pool = Path(files[0]).parent
    shutil.rmtree(pool)
    shutil.copytree(pool.with_name("pristine"), pool)


def run_main(argv) -> tuple[int, str]:
    """(exit status, stderr) of main(argv) with an empty stdin."""
    err, out = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO("")
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = cli.main(argv)
            except SystemExit as e:  # argparse: usage errors (2), --help / --version (0)
                code = e.code if isinstance(e.code, int) else 2
    finally:
        sys.stdin = old_stdin
    return code, err.getvalue()


def test_fuzz_cli_arguments(files, stubs):
    table = commands(cli.build_parser())
    tally = Tally()

    @FUZZ
    @given(argvs(table, files))
    def fuzz(argv):
        fresh(files)
        with memory_bound(2 << 30):
            code, err = run_main(argv)
        assert code in (0, 2), (argv, code, err[-2000:])
        assert "Traceback" not in err, (argv, err[-2000:])
        if code == 2:
            errors = [ln for ln in err.splitlines() if ln.startswith("zeroformer: error:")]
            assert len(errors) == 1, (argv, err[-2000:])
        tally.add("UserError" if code == 2 else "ok")

    fuzz()
    assert tally.total >= FUZZ.max_examples and tally.counts["ok"] and tally.counts["UserError"], \
        tally.counts
