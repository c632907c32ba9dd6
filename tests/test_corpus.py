"""Corpus readers: directory, zip, JSONL and Parquet give the same texts; bad files are
skipped and counted; the train/test split is deterministic and groups whole directories."""

from __future__ import annotations

import json
import zipfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from apmae.corpus import Corpus, CorpusError, decode_source, split_of

SKIP_REASON = "empty, binary or not UTF-8"


def _texts(corpus):
    return sorted(f.text for f in corpus)


def test_directory_reads_every_java_file(java_dir, java_texts):
    """A directory gives each ``*.java`` once, with '/'-relative paths and exact text."""
    corpus = Corpus(java_dir)
    files = list(corpus)
    assert sorted(f.path for f in files) == sorted(java_texts)
    assert {f.path: f.text for f in files} == java_texts
    assert corpus.stats.read == 3 and corpus.stats.skipped == {}


def test_zip_with_subfolder_and_non_java_entry(tmp_path, java_texts):
    """A zip yields only ``.java`` entries (subfolders included, directory entries and other
    files ignored), under their in-zip paths, with the same texts as the directory."""
    zpath = tmp_path / "src.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("pkg/", "")  # an explicit directory entry
        zf.writestr("README.txt", "not java")
        zf.writestr("pkg/sub/notes.md", "# not java either")
        for i, (name, text) in enumerate(sorted(java_texts.items())):
            zf.writestr(name if i == 0 else f"pkg/sub/{name}", text.encode("utf-8"))
    corpus = Corpus(zpath)
    files = list(corpus)
    names = sorted(java_texts)
    assert sorted(f.path for f in files) == sorted([names[0], *(f"pkg/sub/{n}" for n in names[1:])])
    assert _texts(files) == sorted(java_texts.values())
    assert corpus.stats.read == 3 and corpus.stats.skipped == {}


def test_jsonl_and_parquet_give_the_same_texts(tmp_path, java_dir, java_texts):
    """JSONL and Parquet with a ``content`` column (and ``path``) read like the directory."""
    rows = [{"path": name, "content": text} for name, text in sorted(java_texts.items())]
    jsonl = tmp_path / "c.jsonl"
    # a blank line in the middle is allowed
    jsonl.write_text("\n".join(json.dumps(r) for r in rows[:1]) + "\n\n"
                     + "\n".join(json.dumps(r) for r in rows[1:]) + "\n", encoding="utf-8")
    parquet = tmp_path / "c.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)

    expected = {f.path: f.text for f in Corpus(java_dir)}
    for src in (jsonl, parquet):
        corpus = Corpus(src)
        assert {f.path: f.text for f in corpus} == expected, src
        assert corpus.stats.read == 3


def test_rows_without_a_path_get_numbered_paths(tmp_path, java_texts):
    """Rows with no path column are named by their row number, so paths stay unique."""
    pq.write_table(pa.Table.from_pylist([{"content": t} for t in java_texts.values()]),
                   tmp_path / "c.parquet")
    assert [f.path for f in Corpus(tmp_path / "c.parquet")] == \
        ["00000000.java", "00000001.java", "00000002.java"]


def _bad_files() -> dict[str, bytes]:
    return {
        "Empty.java": b"",
        "Blank.java": b"  \n\t\n",
        "Binary.java": b"class A {\x00\x01}\n",
        "Latin1.java": "class Caf\u00e9 {}\n".encode("latin-1"),  # lone 0xE9: not UTF-8
    }


def test_bad_files_in_a_directory_are_skipped_and_counted(tmp_path, java_texts):
    """Empty, whitespace-only, NUL-containing and non-UTF-8 files never raise: they are
    skipped and counted under one reason; the good files are still read."""
    for name, text in java_texts.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    for name, data in _bad_files().items():
        (tmp_path / name).write_bytes(data)
    corpus = Corpus(tmp_path)
    assert _texts(corpus) == sorted(java_texts.values())
    assert corpus.stats.read == 3
    assert corpus.stats.skipped == {SKIP_REASON: 4}


def test_bad_files_in_a_zip_are_skipped_and_counted(tmp_path, java_texts):
    """The same skipping applies to zip entries."""
    zpath = tmp_path / "src.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for name, text in java_texts.items():
            zf.writestr(f"a/{name}", text)
        for name, data in _bad_files().items():
            zf.writestr(f"b/{name}", data)
    corpus = Corpus(zpath)
    assert len(list(corpus)) == 3
    assert corpus.stats.skipped == {SKIP_REASON: 4}


def test_only_bad_files_does_not_raise(tmp_path):
    """A corpus whose every file is bad yields nothing but does not raise (the skips say why)."""
    for name, data in _bad_files().items():
        (tmp_path / name).write_bytes(data)
    corpus = Corpus(tmp_path)
    assert list(corpus) == []
    assert corpus.stats.read == 0 and corpus.stats.skipped == {SKIP_REASON: 4}


def test_stats_reset_on_each_iteration(java_dir):
    """Iterating twice counts each file once per pass, not cumulatively."""
    corpus = Corpus(java_dir)
    list(corpus)
    list(corpus)
    assert corpus.stats.read == 3


def test_decode_source():
    """``decode_source`` returns text for UTF-8 and None for empty/binary/non-UTF-8."""
    assert decode_source("int \u00e9;".encode()) == "int \u00e9;"
    for bad in _bad_files().values():
        assert decode_source(bad) is None


def test_read_one_file(java_dir, java_texts):
    """``Corpus.read`` returns one file by path and raises CorpusError for an unknown path."""
    corpus = Corpus(java_dir)
    assert corpus.read("Util.java") == java_texts["Util.java"]
    with pytest.raises(CorpusError, match="Nope.java"):
        corpus.read("Nope.java")


# --- split ------------------------------------------------------------------------------------


def test_split_of_is_deterministic_and_pinned():
    """The split is a pure function of the directory; pinned values guard against a change of
    hash, which would silently move files between train and test."""
    assert split_of("java/util/ArrayList.java") == "train"
    assert split_of("p8/A.java") == "test"
    assert split_of("p18/B.java") == "test"
    assert split_of("p9/A.java") == "train"
    assert [split_of("p8/A.java") for _ in range(3)] == ["test"] * 3


def test_split_groups_by_directory():
    """Two files of one directory always land on the same side; the file name plays no part."""
    for i in range(300):
        d = f"org/x{i}/pkg"
        assert split_of(f"{d}/A.java") == split_of(f"{d}/Zzz{i}.java")
    # root-level files share the empty group
    assert split_of("A.java") == split_of("B.java")


def test_split_fraction_roughly_matches():
    """Over many directories the test share is about the configured fraction."""
    paths = [f"d{i}/F.java" for i in range(4000)]
    share = sum(split_of(p) == "test" for p in paths) / len(paths)
    assert 0.08 < share < 0.12
    half = sum(split_of(p, test_fraction=0.5) == "test" for p in paths) / len(paths)
    assert 0.46 < half < 0.54
    assert {split_of(p, test_fraction=0.0) for p in paths[:200]} == {"train"}
    assert {split_of(p, test_fraction=1.0) for p in paths[:200]} == {"test"}


def test_corpus_split_filter(tmp_path, java_texts):
    """``Corpus(split=...)`` yields exactly the files of that side, and the two sides
    partition the corpus."""
    text = next(iter(java_texts.values()))
    for d in ("p8", "p18", "p9", "java/util"):
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "A.java").write_text(text)
    test = sorted(f.path for f in Corpus(tmp_path, split="test"))
    train = sorted(f.path for f in Corpus(tmp_path, split="train"))
    assert test == ["p18/A.java", "p8/A.java"]
    assert train == ["java/util/A.java", "p9/A.java"]


# --- errors -------------------------------------------------------------------------------------


def test_missing_path_raises(tmp_path):
    """A path that does not exist is a CorpusError naming it."""
    with pytest.raises(CorpusError, match="no such file"):
        list(Corpus(tmp_path / "missing"))


def test_empty_directory_raises(tmp_path):
    """A directory without any Java file is a CorpusError."""
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(CorpusError, match="no Java files"):
        list(Corpus(tmp_path))


def test_unknown_file_type_raises(tmp_path):
    """A file that is none of the supported formats is a CorpusError."""
    p = tmp_path / "corpus.txt"
    p.write_text("class A {}")
    with pytest.raises(CorpusError, match="not a directory"):
        list(Corpus(p))


def test_bad_zip_raises(tmp_path):
    """A ``.zip`` that is not a zip is a CorpusError, not a BadZipFile."""
    p = tmp_path / "src.zip"
    p.write_bytes(b"this is not a zip archive at all")
    with pytest.raises(CorpusError, match="not a readable zip"):
        list(Corpus(p))


def test_jsonl_without_content_raises(tmp_path):
    """A JSONL row without ``content`` is a CorpusError naming the line."""
    p = tmp_path / "c.jsonl"
    p.write_text(json.dumps({"content": "class A {}"}) + "\n" + json.dumps({"text": "x"}) + "\n")
    with pytest.raises(CorpusError, match=r":2: no 'content'"):
        list(Corpus(p))


def test_jsonl_not_json_raises(tmp_path):
    """A line that is not JSON is a CorpusError naming the line."""
    p = tmp_path / "c.jsonl"
    p.write_text('{"content": "class A {}"}\n{oops\n')
    with pytest.raises(CorpusError, match=r":2: not JSON"):
        list(Corpus(p))


def test_parquet_without_content_raises(tmp_path):
    """A Parquet file without a ``content`` column is a CorpusError."""
    p = tmp_path / "c.parquet"
    pq.write_table(pa.Table.from_pylist([{"text": "class A {}"}]), p)
    with pytest.raises(CorpusError, match="no 'content' column"):
        list(Corpus(p))


# --- known bugs -------------------------------------------------------------------------------


def test_jsonl_lone_surrogate_is_skipped(tmp_path, java_texts):
    """``"\\ud800"`` is valid JSON but not encodable text: such a row is 'not UTF-8' and must be
    skipped and counted like a non-UTF-8 file."""
    p = tmp_path / "c.jsonl"
    good = java_texts["Util.java"]
    p.write_text(json.dumps({"path": "a/Good.java", "content": good}) + "\n"
                 + json.dumps({"path": "b/Bad.java", "content": good + "// \ud800\n"}) + "\n")
    corpus = Corpus(p)
    assert [f.path for f in corpus] == ["a/Good.java"]
    assert corpus.stats.skipped == {SKIP_REASON: 1}


def test_jsonl_non_string_content_is_not_a_crash(tmp_path):
    """A row whose content is not a string is a CorpusError or a counted skip, never an
    AttributeError (the CLI only turns ValueErrors into one-line messages)."""
    p = tmp_path / "c.jsonl"
    p.write_text(json.dumps({"path": "a/A.java", "content": 123}) + "\n")
    corpus = Corpus(p)
    try:
        files = list(corpus)
    except CorpusError:
        return
    assert files == [] and corpus.stats.skipped == {SKIP_REASON: 1}
