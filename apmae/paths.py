"""Where apmae keeps things: one function decides every path.

``APMAE_HOME`` holds every artifact of a run (scenarios, patterns, checkpoints, the
database). Default: ``$XDG_CACHE_HOME/apmae`` (``~/.cache/apmae``), outside any checkout so a
fresh clone does not lose hours of training.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

PACKAGE_DIR = Path(__file__).resolve().parent
#: The shipped default target model (weights, tokenizer, model card).
DEFAULT_MODEL_DIR = PACKAGE_DIR / "default_model"
#: The shipped AP-MAE trained on the default model's patterns (weights, card).
DEFAULT_MAE_DIR = PACKAGE_DIR / "default_mae"


def apmae_home() -> Path:
    """The folder that holds every artifact; ``APMAE_HOME`` overrides the default."""
    env = os.environ.get("APMAE_HOME")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "apmae"


def home_relative(path: str) -> str:
    """``path`` as shipped files write it: under ``APMAE_HOME`` as ``$APMAE_HOME/...``, so a
    card names no folder of the machine it was made on; any other path unchanged."""
    if Path(path).is_relative_to(apmae_home()):
        return f"$APMAE_HOME/{Path(path).relative_to(apmae_home()).as_posix()}"
    return path


def weights_digest(model_dir: Path) -> str:
    """The first 12 hex digits of the SHA-256 of a folder's ``model.safetensors``: which
    weights these are, whatever folder they sit in."""
    return hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()[:12]


def run_dir(name: str = "default") -> Path:
    """The folder of one named run under ``APMAE_HOME``."""
    return apmae_home() / "runs" / name


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds.

    Readers never see a half-written file, and a crash leaves the old file intact.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def fsync_dir(path: Path) -> None:
    """Make the entries of folder ``path`` durable: a file renamed or created into it (what
    :func:`atomic_path` does) survives a power loss only once its folder is synced too."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Like :func:`atomic_path` for a folder (a saved model): built under a temporary name,
    then swapped in; an old folder is moved aside first and removed after the swap."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        old = path.with_name(f".{path.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
