"""The package's layers, read from the source with `ast` (nothing is imported or run):

    base (config.py, errors.py, tokenizers/, data/)  <-  {nn, generate}  <-  models  <-  {io, train}
        <-  inference  <-  {recipes, cli}

generate.py is the decoding engine (sampling, beam search, the Session protocol a model's decoding
state implements); it knows no model class, and every model's one generate() calls it, so it sits
beside nn, below models.

A module may import its own layer and the layers below it, never one above (docs/architecture.md).
Every import counts: relative (`from ..x import y`) and absolute (`zeroformer.x`), at module level
or inside a function. Besides: recipes never import cli; a cli command module never imports
another (cli/__init__.py registers them, cmd_eval.py registers the eval_* metrics); no file in
zeroformer/ is over 400 lines.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "zeroformer"

# top-level module or package of zeroformer/ -> layer
LAYER = {
    "config": 0, "errors": 0, "tokenizers": 0, "data": 0,
    "nn": 1, "generate": 1, "batching": 1,
    "models": 2,
    "io": 3, "train": 3,
    "": 3,   # zeroformer/__init__.py: load() and load_tokenizer() over io/ and tokenizers/
    "inference": 4,
    "recipes": 5, "cli": 5, "serve": 5, "__main__": 5,
}
MAX_LINES = 400
KNOWN: set = set()  # upward edges tolerated for now: none


def module_name(path: Path) -> str:
    parts = ["zeroformer", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def exists(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def imports_of(source: str, name: str, is_package: bool) -> list[tuple[int, str]]:
    """[(line, imported zeroformer module)] of every import in `source` (module `name`)."""
    package = name if is_package else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = ".".join(base[:len(base) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module
            # `from pkg import sub`: the submodule when there is one, else pkg itself
            subs = [f"{target}.{a.name}" for a in node.names if exists(f"{target}.{a.name}")]
            out += [(node.lineno, t) for t in subs or [target]]
    return [(n, t) for n, t in out if t == "zeroformer" or t.startswith("zeroformer.")]


def top(name: str) -> str:
    return name.split(".")[1] if "." in name else ""


def graph():
    """{source file (relative): [(line, module name, imported module)]} of the whole package."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        name = module_name(path)
        rel = str(path.relative_to(ROOT))
        out[rel] = [(n, name, t) for n, t in imports_of(path.read_text(encoding="utf-8"), name,
                                                     path.name == "__init__.py")]
    return out


def violations(edges) -> list[str]:
    bad = []
    for line, src, dst in edges:
        s, d = top(src), top(dst)
        if s not in LAYER or d not in LAYER:
            bad.append(f"{src}:{line} -> {dst}: {s or d!r} has no layer in test_layers.LAYER")
        elif LAYER[d] > LAYER[s] and (src, dst) not in KNOWN:
            bad.append(f"{src}:{line} imports {dst} (layer {LAYER[d]} above {LAYER[s]})")
        elif s == "recipes" and d == "cli":
            bad.append(f"{src}:{line} imports {dst} (recipes never import the CLI)")
        elif s == d == "cli" and is_command(src) and is_command(dst) and not (
                src == "zeroformer.cli.cmd_eval" and dst.startswith("zeroformer.cli.eval_")):
            bad.append(f"{src}:{line} imports {dst} (command modules never import each other)")
    return bad


def is_command(name: str) -> bool:
    return name.rpartition(".")[2].startswith(("cmd_", "eval_"))


def test_the_reader_sees_every_kind_of_import():
    """The checker itself: relative, absolute, `from .. import module` and in-function imports
    are all found, and an upward import is reported."""
    src = ("from ..nn.attention import build_mask\nimport zeroformer.io.checkpoint\n"
           "def f():\n    from .. import cli\n    from zeroformer.inference import chat\n")
    found = {t for _, t in imports_of(src, "zeroformer.models.decoder", False)}
    assert found == {"zeroformer.nn.attention", "zeroformer.io.checkpoint", "zeroformer.cli",
                     "zeroformer.inference.chat"}
    bad = violations([(1, "zeroformer.models.decoder", t) for t in sorted(found)])
    assert len(bad) == 3 and not any("nn.attention" in b for b in bad)
    assert violations([(1, "zeroformer.cli.cmd_chat", "zeroformer.cli.cmd_generate")])
    assert not violations([(1, "zeroformer.cli.cmd_chat", "zeroformer.cli.common")])
    assert violations([(1, "zeroformer.recipes.lm_bpe", "zeroformer.cli.cmd_chat")])
    # the package as read: known edges are there, including one inside a function
    edges = {(s, d) for es in graph().values() for _, s, d in es}
    assert ("zeroformer", "zeroformer.io.loading") in edges            # inside load()
    assert ("zeroformer.cli.cmd_chat", "zeroformer.inference.chat") in edges


def test_every_top_level_module_has_a_layer():
    names = {p.stem if p.is_file() else p.name for p in ROOT.iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").is_file())}
    assert names - {"__init__"} <= set(LAYER), sorted(names - set(LAYER))


def test_imports_point_down_only():
    edges = [e for es in graph().values() for e in es]
    bad = violations(edges)
    assert not bad, "\n".join(bad)
    stale = KNOWN - {(s, d) for _, s, d in edges}
    assert not stale, f"fixed, remove from KNOWN: {sorted(stale)}"


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_files_are_small(path):
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(ROOT)}: {n} lines (at most {MAX_LINES})"
