"""Fuzzed data files (tests/hostile.py): labelled TSV and JSON lines (classify, eval accuracy), the
translation TSV (bible-es-en), prompt/response JSON lines (finetune) and plain training text.
Each reader returns or raises a UserError naming the file."""

import json

import pytest
from hypothesis import given, strategies as st
from hostile import FUZZ, HOSTILE_VALUES, Tally, byte_mutations, check

from zeroformer.data.labelled import read_labelled
from zeroformer.recipes.lm_bpe import _read_pairs
from zeroformer.tokenizers.base import read_training_text
from zeroformer.train.translation import read_pairs

ROWS = [("a fine film", "pos"), ("dull\u00a0and long", "neg"), ("naïve café", "pos")] * 4


@st.composite
def line_file_variants(draw, lines: list[str]):
    """Bytes of a hostile variant of a line-based file: byte mutations, or lines dropped,
    duplicated, split at a tab, given extra tabs / hostile JSON values / CR / NUL / non-UTF-8."""
    valid = ("\n".join(lines) + "\n").encode()
    if draw(st.booleans()):
        return draw(byte_mutations(valid))
    out = list(lines)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(out) - 1))
        kind = draw(st.sampled_from(["drop", "dup", "tabs", "json", "junk"]))
        if kind == "drop" and len(out) > 1:
            del out[i]
        elif kind == "dup":
            out.insert(i, out[i])
        elif kind == "tabs":
            out[i] = out[i].replace("\t", draw(st.sampled_from(["", "\t\t", " ", "\t\r"])), 1)
        elif kind == "json" and out[i].startswith("{") and out[i].endswith("}"):
            d = json.loads(out[i])
            key = draw(st.sampled_from(sorted(d) + ["extra"]))
            d[key] = draw(HOSTILE_VALUES)
            out[i] = json.dumps(d)
        else:
            out[i] = draw(st.sampled_from(["", " ", "\r", "\x00", "\t", "{", "[1]", "null",
                                           "\ufeff" + out[i], out[i] + "\udcff"]))
    text = "\n".join(out)
    return text.encode("utf-8", "surrogateescape")  # "\udcff" -> the byte 0xff: not UTF-8


def run_fuzz(path, lines, read):
    tally = Tally()

    @FUZZ
    @given(line_file_variants(lines))
    def fuzz(data):
        path.write_bytes(data)
        tally.add(check(lambda: read(path), path))

    fuzz()
    assert tally.total >= FUZZ.max_examples and tally.counts["UserError"], tally.counts


@pytest.mark.parametrize("name, lines, read", [
    ("train.tsv", ["text\tlabel"] + [f"{t}\t{lb}" for t, lb in ROWS], read_labelled),
    ("train.jsonl", [json.dumps({"text": t, "label": lb}) for t, lb in ROWS], read_labelled),
    ("pairs.tsv", [f"Gen\t1\t{k}\thola {t}\thello {t}" for k, (t, _) in enumerate(ROWS)],
     read_pairs),
    ("sft.jsonl", [json.dumps({"prompt": t, "response": lb}) for t, lb in ROWS], _read_pairs),
    ("input.txt", [t for t, _ in ROWS], lambda p: read_training_text([p])),
], ids=["labelled-tsv", "labelled-jsonl", "translation-tsv", "sft-jsonl", "text"])
def test_fuzz_data_file(tmp_path, name, lines, read):
    run_fuzz(tmp_path / name, lines, read)
