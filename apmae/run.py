"""A run: the folder under ``APMAE_HOME/runs/<name>`` that holds every artifact of one analysis.

Every path under a run is named here and nowhere else; stages ask the run for them.

```
runs/<name>/
  run.json            model, tokenizer fingerprint, window, settings of each stage
  scenarios.jsonl     mined scenarios (apmae mine; run.json's "scenarios" may name another file)
  results.jsonl       one line per scenario: completion and both correctness flags (apmae extract)
  patterns/           the kept patterns, an array store (apmae.store.arrays)
  parts/rank-<r>/     a torchrun rank's share of an extraction, a run of its own until merged
  mae/model/          the run's AP-MAE (trained, or the shipped one installed; apmae mae train)
  mae/eval.json       its evaluation (apmae mae eval), which the report includes
  mae/triptychs/      pattern / reconstruction / error images of the evaluation
  embeddings/         one AP-MAE embedding per (scenario, layer, head) (apmae encode)
  pattern_stats/      statistics of each whole pattern (the predictor's no-AP-MAE baseline)
  row_stats/          statistics of each head's predicting row (apmae.atlas.rows)
```
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from .paths import atomic_path, run_dir
from .store.arrays import ArrayStore, StoreMeta

if TYPE_CHECKING:
    from .scenarios import Scenario


class Run:
    def __init__(self, name: str = "default", path: Path | None = None) -> None:
        self.name = name
        self.path = path if path is not None else run_dir(name)

    scenarios_path = property(lambda self: self.path / "scenarios.jsonl")
    results_path = property(lambda self: self.path / "results.jsonl")
    patterns_path = property(lambda self: self.path / "patterns")
    meta_path = property(lambda self: self.path / "run.json")
    parts_path = property(lambda self: self.path / "parts")
    mae_path = property(lambda self: self.path / "mae")
    mae_model_path = property(lambda self: self.path / "mae" / "model")
    mae_eval_path = property(lambda self: self.path / "mae" / "eval.json")
    embeddings_path = property(lambda self: self.path / "embeddings")
    pattern_stats_path = property(lambda self: self.path / "pattern_stats")
    row_stats_path = property(lambda self: self.path / "row_stats")

    @property
    def scenarios_source(self) -> Path:
        """The scenarios file the run was extracted from (its own, unless run.json names another)."""
        return Path(self.meta().get("scenarios", self.scenarios_path))

    def scenarios(self) -> list[Scenario]:
        """The run's scenarios that have results, in results order."""
        from .scenarios import read_scenarios

        by_id = {s.id: s for s in read_scenarios(self.scenarios_source)}
        return [by_id[r["id"]] for r in self.results() if r["id"] in by_id]

    def part(self, rank: int) -> Run:
        """Where torchrun rank ``rank`` extracts its share: results and patterns of their own,
        so ranks never write to one file, merged into this run afterwards."""
        return Run(f"{self.name}/rank-{rank}", path=self.parts_path / f"rank-{rank}")

    def parts(self) -> list[Run]:
        """The parts not merged yet, of any earlier world size too."""
        if not self.parts_path.exists():
            return []
        return [Run(f"{self.name}/{p.name}", path=p) for p in sorted(self.parts_path.glob("rank-*"))]

    def meta(self) -> dict:
        return json.loads(self.meta_path.read_text()) if self.meta_path.exists() else {}

    def update_meta(self, **fields) -> None:
        meta = {**self.meta(), **fields}
        with atomic_path(self.meta_path) as tmp:
            tmp.write_text(json.dumps(meta, indent=2))

    def results(self) -> Iterator[dict]:
        """Completed scenarios; a torn last line (a killed run) is ignored."""
        if not self.results_path.exists():
            return
        with open(self.results_path, encoding="utf-8") as fh:
            for line in fh:
                if line.endswith("\n"):
                    yield json.loads(line)

    def append_results(self, rows: list[dict]) -> None:
        """Append result lines and make them durable before the next batch starts.

        A line torn by ``kill -9`` is cut off first, so the file stays valid JSONL.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.results_path, "a+b") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    fh.seek(0)
                    data = fh.read()
                    fh.truncate(data.rfind(b"\n") + 1)
                    fh.seek(0, os.SEEK_END)
            fh.write("".join(json.dumps(r) + "\n" for r in rows).encode())
            fh.flush()
            os.fsync(fh.fileno())

    def embeddings(self, meta: StoreMeta | None = None) -> ArrayStore:
        return ArrayStore(self.embeddings_path, meta)

    def pattern_stats(self, meta: StoreMeta | None = None) -> ArrayStore:
        return ArrayStore(self.pattern_stats_path, meta)

    def row_stats(self, meta: StoreMeta | None = None) -> ArrayStore:
        return ArrayStore(self.row_stats_path, meta)

    def pattern_store(self, meta: StoreMeta | None = None) -> ArrayStore | None:
        """The run's pattern store: created with ``meta``, else opened if it exists."""
        if meta is None and not (self.patterns_path / "meta.json").exists():
            return None
        return ArrayStore(self.patterns_path, meta)
