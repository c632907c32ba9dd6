"""What the app holds between requests: the run, its database, the loaded models, the bounded
inference pool and a memory-bounded cache of recent patterns. Built once by the lifespan."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import threading
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Engine

from apmae.atlas.describe import pattern_metrics
from apmae.atlas.similar import HeadVectors
from apmae.capture import recompute_patterns
from apmae.db import models as m
from apmae.db.session import migrated_engine, session_scope
from apmae.live import LiveAtlas, LiveError
from apmae.run import Run
from apmae.scenarios import Scenario
from apmae.store.arrays import ArrayStore

from .settings import Settings


class Busy(Exception):
    """Every worker is busy and the queue is full: come back later."""


class InferencePool:
    """A fixed number of threads run the model; at most ``queue`` requests wait for them.

    Beyond that, :meth:`run` raises :class:`Busy` at once instead of queueing without bound; a
    request that waits and runs longer than ``timeout_s`` raises ``TimeoutError`` (its
    computation finishes in the background and still holds its slot until then, so the bound
    stays true).
    """

    def __init__(self, workers: int, queue: int, timeout_s: float) -> None:
        self._executor = ThreadPoolExecutor(max(1, workers), thread_name_prefix="apmae-model")
        self._slots, self._timeout = max(1, workers) + max(0, queue), timeout_s
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        return self._pending

    def _release(self, _future: Any) -> None:
        with self._lock:
            self._pending -= 1

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self._lock:
            if self._pending >= self._slots:
                raise Busy()
            self._pending += 1
        call = functools.partial(contextvars.copy_context().run, fn, *args)
        future = asyncio.get_running_loop().run_in_executor(self._executor, call)
        future.add_done_callback(self._release)
        return await asyncio.wait_for(asyncio.shield(future), self._timeout)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class PatternCache:
    """Recent ``[layers, heads, L]`` pattern arrays by key, evicted oldest first beyond a byte
    budget: live results and recomputed scenarios, fetched head by head by the pages."""

    def __init__(self, max_bytes: int) -> None:
        self._items: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()
        self._max, self._bytes = max_bytes, 0
        self._lock = threading.Lock()

    def put(self, entry: dict[str, np.ndarray], key: str | None = None) -> str:
        key = key or uuid.uuid4().hex
        size = sum(a.nbytes for a in entry.values())
        with self._lock:
            self._items[key] = entry
            self._bytes += size
            while self._bytes > self._max and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= sum(a.nbytes for a in old.values())
        return key

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        with self._lock:
            entry = self._items.get(key)
            if entry is not None:
                self._items.move_to_end(key)
            return entry


class ScenarioIndex:
    """A scenario by id without holding every prompt in memory: byte offsets into the
    scenarios file, read one line on demand."""

    def __init__(self, path: Path) -> None:
        self.path, self._offsets = path, {}
        self._code: dict[str, str] | None = None
        if path.exists():
            with open(path, "rb") as fh:
                offset = 0
                for line in fh:
                    if line.strip():
                        key = json.loads(line)["id"]
                        self._offsets[key] = offset
                    offset += len(line)

    def __contains__(self, key: str) -> bool:
        return key in self._offsets

    def code_matches(self, text: str) -> list[str]:
        """Keys of the scenarios whose prompt code (prefix or suffix) contains ``text``, ignoring
        case. The code is read on the first search and kept, lowercased, for the next ones."""
        if self._code is None:
            code = {}
            if self.path.exists():
                with open(self.path, encoding="utf-8") as fh:
                    for line in fh:
                        if line.strip():
                            row = json.loads(line)
                            code[row["id"]] = f"{row.get('prefix', '')}\x00{row.get('suffix', '')}".casefold()
            self._code = code
        needle = text.casefold()
        return [key for key, code in self._code.items() if needle in code]

    def get(self, key: str) -> Scenario | None:
        if key not in self._offsets:
            return None
        with open(self.path, "rb") as fh:
            fh.seek(self._offsets[key])
            return Scenario(**json.loads(fh.readline()))


@dataclass
class Explorer:
    """Everything the routes share. ``atlas`` is None (and ``problem`` says why) when the run
    is not built yet: the pages then say what to run instead of failing."""

    settings: Settings
    run: Run
    engine: Engine
    pool: InferencePool
    cache: PatternCache
    scenarios: ScenarioIndex
    atlas: LiveAtlas | None = None
    problem: str | None = None
    run_id: int | None = None
    tasks: list[str] = field(default_factory=list)
    report: dict | None = None  # built on first request
    patterns: ArrayStore | None = None  # the run's kept patterns, opened once
    similar: dict[tuple[str, str], HeadVectors] = field(default_factory=dict)  # (run, measure)

    @classmethod
    def load(cls, settings: Settings, run: Run | None = None) -> Explorer:
        """Open the run (``run`` overrides ``settings.run``'s folder) and load its models."""
        run = run or Run(settings.run)
        engine = migrated_engine(settings.database_url)
        source = run.scenarios_source
        state = cls(settings, run, engine,
                    InferencePool(settings.workers, settings.queue, settings.timeout_s),
                    PatternCache(settings.cache_bytes), ScenarioIndex(source),
                    patterns=run.pattern_store())
        try:
            state.atlas = LiveAtlas.load(run, engine)
        except (LiveError, OSError, ValueError) as e:
            state.problem = str(e)
        with session_scope(engine) as session:
            state.run_id = session.scalar(select(m.Run.id).where(m.Run.name == run.name))
            if state.run_id is not None:
                state.tasks = sorted(session.scalars(
                    select(m.Scenario.task).where(m.Scenario.run_id == state.run_id).distinct()))
        return state

    def scenario_patterns(self, key: str) -> np.ndarray:
        """``[layers, heads, L]`` patterns of a stored scenario: kept in the run's store, else
        recomputed by the prefill pass extraction ran (cached). Blocking: call in the pool."""
        if self.patterns is not None and self.patterns.has(key):
            return np.asarray(self.patterns.get(key))
        cached = self.cache.get(f"scenario:{key}")
        if cached is not None:
            return cached["baseline"]
        scenario = self.scenarios.get(key)
        if scenario is None or self.atlas is None:
            raise LookupError(key)
        patterns = recompute_patterns(self.atlas.lm, [scenario])[0].numpy()
        self.cache.put({"baseline": patterns}, f"scenario:{key}")
        return patterns

    def head_patterns(self, layer: int, head: int, labels: dict[str, int]) -> dict[str, np.ndarray]:
        """One head's kept patterns, summarised (cached): ``keys`` and ``labels`` of the kept
        scenarios among ``labels`` (scenario key -> cluster), their per-pattern ``metrics``
        (:func:`apmae.atlas.describe.pattern_metrics`), the head's mean attention weights
        ``mean`` and each cluster's (``cluster_labels``, ``cluster_means``, ``cluster_n``), all
        packed. The store keeps a sample of scenarios, so these rest on that sample only."""
        name = f"head:{layer}:{head}"
        cached = self.cache.get(name)
        if cached is not None:
            return cached
        keys = [k for k in self.patterns.ids() if k in labels] if self.patterns is not None else []
        size = self.patterns.meta.length if self.patterns is not None else 0
        packed = np.stack([self.patterns.get(k, layer, head) for k in keys]) if keys \
            else np.empty((0, size), np.float32)
        own = np.array([labels[k] for k in keys], int)
        p = np.exp(packed)
        groups = np.unique(own)
        entry = {"keys": np.array(keys, dtype=object), "labels": own,
                 "metrics": pattern_metrics(packed, [self.scenarios.get(k).input_ids for k in keys]),
                 "mean": p.mean(0) if keys else np.empty(0),
                 "cluster_labels": groups,
                 "cluster_means": np.stack([p[own == g].mean(0) for g in groups]) if keys
                 else np.empty((0, size)),
                 "cluster_n": np.array([(own == g).sum() for g in groups], int)}
        self.cache.put(entry, name)
        return entry
