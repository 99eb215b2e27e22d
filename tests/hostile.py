"""Fuzzing helpers (tests/test_fuzz_*.py): hostile variants of a valid file, and the property every
reader keeps on them.

Inputs: pure random bytes, and structured mutations of a valid file: cut at a random offset,
bytes flipped, spans deleted or inserted, 4/8-byte words overwritten with huge or negative values
(the declared sizes, offsets and counts of binary formats), JSON values replaced by hostile ones
(wrong types, huge or negative numbers, NaN, unknown fields, deleted keys), deep nesting, non-UTF-8.

Property (`check`): the reader returns, or raises `UserError` whose message names the file (or
the folder holding it); any other exception fails the test, and so does running past the
hypothesis deadline (60 s: a hang). Each call runs under `memory_bound()`, which caps the
process's address space at its size + 1 GiB, so a reader that believes a huge declared size and
allocates for it fails (MemoryError or torch's allocator error) instead of passing. (The cap is
set per example: over 10,000 examples the test process itself grows by several hundred MB.)

Settings: `FUZZ`, 1,000 derandomized examples per reader (the same inputs on every run: the
default suite). A bigger run: `ZEROFORMER_FUZZ_EXAMPLES=10000 pytest tests/test_fuzz_*.py`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import resource

from hypothesis import HealthCheck, settings, strategies as st

from zeroformer.errors import UserError

# deadline: a hang detector, not a speed requirement (an example takes milliseconds; 60 s only
# catches a loop that never ends, even on a loaded machine)
EXAMPLES = int(os.environ.get("ZEROFORMER_FUZZ_EXAMPLES", "1000"))
FUZZ = settings(max_examples=EXAMPLES, deadline=60_000, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck), print_blob=False)

HUGE = [2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 40, 2 ** 62, 2 ** 63 - 1, 2 ** 63,
        2 ** 64 - 1, 10 ** 30]
HOSTILE_VALUES = st.sampled_from([
    None, True, False, 0, -1, 1, -(2 ** 63), *HUGE, 0.5, -0.0, 1e308, math.inf, -math.inf,
    math.nan, "", "x", "F32", "I64", "\udcff", "\x00", [], [0], [-1, 2 ** 40], [[]], {}, {"a": 1},
])


@st.composite
def byte_mutations(draw, valid: bytes):
    """A hostile variant of the bytes of a valid file (see the module docstring)."""
    kind = draw(st.sampled_from(["random", "cut", "flip", "splice", "word", "words"]))
    if kind == "random":
        return draw(st.binary(max_size=512))
    if kind == "cut":
        return valid[:draw(st.integers(0, max(len(valid) - 1, 0)))]
    b = bytearray(valid)
    if not b:
        return bytes(b)
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(b) - 1))
            b[i] = draw(st.integers(0, 255))
    elif kind == "splice":
        i = draw(st.integers(0, len(b)))
        j = draw(st.integers(i, min(len(b), i + 64)))
        b[i:j] = draw(st.binary(max_size=64))
    else:  # overwrite 4- or 8-byte little-endian words: declared lengths, counts, offsets
        for _ in range(draw(st.integers(1, 3 if kind == "words" else 1))):
            width = draw(st.sampled_from([4, 8]))
            value = draw(st.sampled_from(HUGE + [0, 1, 2 ** 16, 2 ** 24])) % (1 << 8 * width)
            i = draw(st.integers(0, max(len(b) - width, 0)))
            b[i:i + width] = value.to_bytes(width, "little")[:len(b) - i]
    return bytes(b)


def _paths(obj, path=()):
    yield path
    if isinstance(obj, dict):
        for k, v in list(obj.items())[:64]:
            yield from _paths(v, path + (k,))
    elif isinstance(obj, list):
        for k, v in list(enumerate(obj))[:64]:
            yield from _paths(v, path + (k,))


@st.composite
def json_mutations(draw, valid):
    """A hostile variant of a JSON value: some nodes replaced by hostile values or deleted, an
    unknown key added. Returns the new value (write it with `dump_json`)."""
    obj = json.loads(json.dumps(valid))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(obj))
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "replace", "delete", "unknown"]))
        if not path:
            if action == "replace":
                obj = copy.deepcopy(draw(HOSTILE_VALUES))
            continue
        parent = obj
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        if action == "delete":
            del parent[key]
        elif action == "unknown" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["zz_unknown", "", "__proto__", "type"]))] = \
                copy.deepcopy(draw(HOSTILE_VALUES))
        else:
            parent[key] = copy.deepcopy(draw(HOSTILE_VALUES))
    return obj


def dump_json(obj) -> bytes:
    """JSON text of `obj` (NaN/Infinity as Python's json writes them; lone surrogates escaped)."""
    return json.dumps(obj).encode()


@st.composite
def json_file_variants(draw, valid):
    """Bytes of a hostile variant of a JSON file: structured, raw-byte, deeply nested or not
    UTF-8."""
    kind = draw(st.sampled_from(["json", "json", "bytes", "deep", "latin1"]))
    if kind == "json":
        return dump_json(draw(json_mutations(valid)))
    text = dump_json(valid)
    if kind == "bytes":
        return draw(byte_mutations(text))
    if kind == "deep":  # nesting far beyond the parser's recursion limit, at a random place
        depth = draw(st.sampled_from([1000, 100000]))
        i = draw(st.integers(0, len(text)))
        return text[:i] + b"[" * depth + b"]" * depth + text[i:]
    return text.replace(b'"', b'"\xff', 1)  # a byte that is not UTF-8


def check(read, path, *names) -> str:
    """Call `read()`; return "ok", or "UserError" when it raised one that names `path` (or its
    folder, or one of `names`). Any other exception propagates: the fuzz test fails on it.
    `read()` runs under `memory_bound()`."""
    try:
        with memory_bound():
            read()
    except UserError as e:
        msg = str(e)
        wanted = [str(path), str(path.parent), *names]
        assert any(w in msg for w in wanted), f"the error does not name {path}: {msg}"
        assert "\n" not in msg.strip() and len(msg) < 4000, msg
        return "UserError"
    return "ok"


def _address_space() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmSize")


@contextlib.contextmanager
def memory_bound(extra: int = 1 << 30):
    """Cap this process's address space at its current size + `extra` bytes for the block
    (Linux; elsewhere no cap). A reader that allocates for a huge declared size then raises
    MemoryError (or torch's allocator RuntimeError), which `check` lets through: a failure."""
    if not os.path.exists("/proc/self/status"):
        yield
        return
    old = resource.getrlimit(resource.RLIMIT_AS)
    cap = _address_space() + extra
    if old[1] != resource.RLIM_INFINITY:
        cap = min(cap, old[1])
    resource.setrlimit(resource.RLIMIT_AS, (cap, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)


class Tally:
    """Counts of outcomes over a fuzz run (printed with -s; asserted to show both happen)."""

    def __init__(self):
        self.counts = {"ok": 0, "UserError": 0}

    def add(self, outcome):
        self.counts[outcome] += 1

    @property
    def total(self):
        return sum(self.counts.values())
