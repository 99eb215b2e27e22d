"""The docs point at code that exists: every `path.py` and `path.py:name` (or `Class.attr`) that
docs/concepts.md and docs/architecture.md cite is a file of the repository that defines that
name (read with `ast`, nothing imported). A rename or a move that forgets the docs fails here.

A cited path may be shortened to its tail (`bpe.py:train_bpe` for zeroformer/tokenizers/bpe.py);
it must then match at least one file, and one of the files it matches must define the name.
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["docs/concepts.md", "docs/architecture.md"]
CITE = re.compile(r"(?<![\w/.])((?:[\w]+/)*[\w]+\.py)(?::([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?))?")
FILES = [p for d in ("zeroformer", "tests", "benchmarks", "examples") if (ROOT / d).is_dir()
         for p in (ROOT / d).rglob("*.py")]


def citations():
    out = []
    for doc in DOCS:
        for n, line in enumerate((ROOT / doc).read_text(encoding="utf-8").splitlines(), 1):
            out += [(f"{doc}:{n}", path, name) for path, name in CITE.findall(line)]
    return out


def defined(path: Path) -> dict[str, set[str]]:
    """{top-level name: names defined in its body (class attributes and methods)}."""
    out = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        inner = set()
        if isinstance(node, ast.ClassDef):
            for sub in node.body:
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    inner.add(sub.name)
                elif isinstance(sub, (ast.Assign, ast.AnnAssign)):
                    targets = sub.targets if isinstance(sub, ast.Assign) else [sub.target]
                    inner |= {t.id for t in targets if isinstance(t, ast.Name)}
            for sub in ast.walk(node):  # self.x = ... and register_buffer("x", ...) in methods
                if isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Store):
                    inner.add(sub.attr)
                elif isinstance(sub, ast.Call) and getattr(sub.func, "attr", "") in (
                        "register_buffer", "register_parameter") and sub.args \
                        and isinstance(sub.args[0], ast.Constant):
                    inner.add(sub.args[0].value)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[node.name] = inner
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            out.update({t.id: set() for t in targets if isinstance(t, ast.Name)})
    return out


CITATIONS = citations()


def test_the_docs_cite_code():
    assert len(CITATIONS) > 50  # the pattern still finds the citations


def missing(where, path, name):
    """Why the citation does not resolve, or None when it does."""
    tail = Path(path).parts
    matches = [f for f in FILES if f.relative_to(ROOT).parts[-len(tail):] == tail]
    if not matches:
        return f"{where}: {path} is not a file of the repository"
    top, _, attr = name.partition(".")
    if name and not any(top in (d := defined(f)) and (not attr or attr in d[top]) for f in matches):
        return f"{where}: {path} does not define {name}"
    return None


def test_cited_code_exists():
    problems = [m for c in CITATIONS if (m := missing(*c))]
    assert not problems, "\n".join(problems)
