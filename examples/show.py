"""How the examples print a value a test can check: one line `name = <python literal>`.

Floats are rounded to 6 significant digits; tensors and arrays become nested lists. Everything
else an example prints is prose for the reader. tests/test_examples.py reads these lines back
with `ast.literal_eval` and checks them against its own arithmetic.
"""


def plain(value):
    """A float, int, str, or a (nested) list of them, from a tensor / array / number."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value


def show(name: str, value) -> None:
    print(f"{name} = {plain(value)!r}")
