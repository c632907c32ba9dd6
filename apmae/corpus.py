"""Java sources: a directory tree, a zip (a JDK's ``lib/src.zip``), JSONL/Parquet with a
``content`` column, or a Hugging Face dataset id — read lazily as ``SourceFile``s.

Unreadable files (empty, binary, not UTF-8) are skipped and counted in ``CorpusStats``,
never raised: a corpus of a hundred thousand files always has a few bad ones.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal

Split = Literal["train", "test"]

#: Share of split groups (directories, i.e. Java packages) held out for evaluation.
TEST_FRACTION = 0.1

#: Where JDKs usually live, searched after ``JAVA_HOME``. Debian's OpenJDK 17 comes first: the
#: set-up installs its source (``openjdk-17-source``) and the default model was trained on it.
JDK_GLOBS = ("/usr/lib/jvm/java-17-openjdk-*", "/usr/lib/jvm/default-java", "/usr/lib/jvm/*", "/usr/local/opt/openjdk*/libexec/openjdk.jdk/Contents/Home",
             "/Library/Java/JavaVirtualMachines/*/Contents/Home", "/opt/java/*", "/opt/jdk*")


class CorpusError(ValueError):
    """The corpus cannot be read at all (missing, empty, wrong format)."""


@dataclass(frozen=True)
class SourceFile:
    path: str  # relative to the source root, '/'-separated
    text: str


@dataclass
class CorpusStats:
    read: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def split_of(path: str, test_fraction: float = TEST_FRACTION) -> Split:
    """Deterministic train/test split by the file's directory.

    Whole directories (Java packages) go to one side, so the generated near-copies that a
    package often holds (``HeapIntBuffer``/``HeapLongBuffer``...) never straddle the split.
    """
    group = path.rsplit("/", 1)[0] if "/" in path else ""
    h = int.from_bytes(hashlib.sha1(group.encode()).digest()[:8], "big")
    return "test" if h / 2**64 < test_fraction else "train"


def decode_source(data: object) -> str | None:
    """Text of a Java file, or None when it is empty, binary or not UTF-8.

    Rows of JSONL/Parquet arrive as ``str`` (or anything): they get the same checks as bytes,
    so a lone surrogate escape or a non-string ``content`` is a skipped file, not a crash.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if not isinstance(data, bytes) or not data.strip() or b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def jdk_src_zips() -> list[Path]:
    """Every JDK ``lib/src.zip`` found: ``JAVA_HOME``'s first, then the usual JDK folders'."""
    homes = [os.environ["JAVA_HOME"]] if os.environ.get("JAVA_HOME") else []
    for pattern in JDK_GLOBS:
        homes.extend(sorted(glob.glob(pattern), reverse=True))
    found: list[Path] = []
    for home in homes:
        for candidate in (Path(home) / "lib" / "src.zip", Path(home) / "src.zip"):
            if candidate.is_file() and candidate.resolve() not in [f.resolve() for f in found]:
                found.append(candidate)
    return found


def find_jdk_src_zip() -> Path | None:
    """The first JDK ``lib/src.zip`` of :func:`jdk_src_zips`."""
    return next(iter(jdk_src_zips()), None)


def default_source() -> str:
    """The default corpus: the Java source that ships with a JDK."""
    found = find_jdk_src_zip()
    if found is None:
        raise CorpusError("no JDK source found (set JAVA_HOME, or on Debian: "
                          "apt-get install openjdk-17-source)")
    return str(found)


def data_identity(source: str | os.PathLike) -> dict:
    """Path, size and SHA-256 of a corpus file, or of a directory's files in path order: what
    says two corpora are the same one."""
    source = Path(source)
    files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
    h = hashlib.sha256()
    for f in files:
        if source.is_dir():
            h.update(f.relative_to(source).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return {"path": str(source), "bytes": sum(f.stat().st_size for f in files),
            "sha256": h.hexdigest()}


def matching_corpus(expected: dict, candidates: list[Path]) -> tuple[Path, dict] | None:
    """The first of ``candidates`` whose bytes are ``expected``'s (:func:`data_identity`), with
    its identity; sizes are compared first so only a likely match is hashed."""
    for c in candidates:
        if c.stat().st_size == expected["bytes"] or c.is_dir():
            identity = data_identity(c)
            if identity["sha256"] == expected["sha256"]:
                return c, identity
    return None


class Corpus:
    """Java files of one source, optionally restricted to one split.

    ``source`` is a directory, a ``.zip``, a ``.jsonl``/``.parquet`` file with a ``content``
    column (and optionally ``path``), or a Hugging Face dataset id.
    """

    def __init__(self, source: str | os.PathLike, split: Split | None = None,
                 hf_split: str = "train") -> None:
        self.source = str(source)
        self.split = split
        self.hf_split = hf_split
        self.stats = CorpusStats()

    def __iter__(self) -> Iterator[SourceFile]:
        self.stats = CorpusStats()
        for path, data in self._raw():
            if self.split is not None and split_of(path) != self.split:
                continue
            text = decode_source(data)
            if text is None:
                self.stats.skip("empty, binary or not UTF-8")
                continue
            self.stats.read += 1
            yield SourceFile(path, text)
        if self.stats.read == 0 and not self.stats.skipped and self.split is None:
            raise CorpusError(f"no Java files in {self.source}")

    def read(self, path: str) -> str:
        """The text of one file by its relative path."""
        for f in self:
            if f.path == path:
                return f.text
        raise CorpusError(f"{path} not found in {self.source}")

    def _raw(self) -> Iterator[tuple[str, object]]:
        src = Path(self.source)
        if src.is_dir():
            for p in sorted(src.rglob("*.java")):
                yield p.relative_to(src).as_posix(), _read_bytes(p)
        elif src.is_file():
            suffix = src.suffix.lower()
            if suffix in (".zip", ".jar"):
                yield from _zip_entries(src)
            elif suffix in (".jsonl", ".json"):
                yield from _jsonl_rows(src)
            elif suffix == ".parquet":
                yield from _parquet_rows(src)
            else:
                raise CorpusError(f"{src}: not a directory, .zip, .jsonl or .parquet")
        elif "/" in self.source and not self.source.startswith((".", "/")):
            yield from _hf_rows(self.source, self.hf_split)
        else:
            raise CorpusError(f"{self.source}: no such file or directory")


def _read_bytes(p: Path) -> bytes:
    try:
        return p.read_bytes()
    except OSError:
        return b""


def _zip_entries(src: Path) -> Iterator[tuple[str, bytes]]:
    try:
        zf = zipfile.ZipFile(src)
    except zipfile.BadZipFile as e:
        raise CorpusError(f"{src}: not a readable zip ({e})") from e
    with zf:
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            if info.is_dir() or not info.filename.endswith(".java"):
                continue
            yield info.filename, zf.read(info)


def _rows_path(row: dict, i: int) -> str:
    for key in ("path", "max_stars_repo_path", "file_path", "name"):
        if isinstance(row.get(key), str):
            return f"{i:08d}/{row[key]}" if key != "path" else row[key]
    return f"{i:08d}.java"


def _jsonl_rows(src: Path) -> Iterator[tuple[str, object]]:
    with open(src, encoding="utf-8", errors="replace") as fh:
        for i, line in enumerate(fh):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise CorpusError(f"{src}:{i + 1}: not JSON ({e.msg})") from e
            if not isinstance(row, dict) or "content" not in row:
                raise CorpusError(f"{src}:{i + 1}: no 'content' field")
            yield _rows_path(row, i), row["content"]


def _parquet_rows(src: Path) -> Iterator[tuple[str, object]]:
    import pyarrow.parquet as pq

    table = pq.ParquetFile(src)
    if "content" not in table.schema_arrow.names:
        raise CorpusError(f"{src}: no 'content' column")
    i = 0
    for batch in table.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            yield _rows_path(row, i), row["content"]
            i += 1


def _hf_rows(dataset_id: str, split: str) -> Iterator[tuple[str, object]]:
    try:
        import datasets
    except ImportError as e:
        raise CorpusError(f"{dataset_id}: reading a hub dataset needs `pip install datasets`") from e
    try:
        ds = datasets.load_dataset(dataset_id, split=split, streaming=True)
    except Exception as e:  # the hub raises many types; all mean "cannot read it"
        raise CorpusError(f"{dataset_id}: cannot load this dataset ({e})") from e
    for i, row in enumerate(ds):
        yield _rows_path(row, i), row.get("content")
