"""Completion scenarios: one masked span per file and task, as a fixed-window FIM prompt.

Mining is balanced across tasks (at most ``per_task`` each) and reproducible from its seed:
files are visited in a seeded order and each file gives each unfilled task one span chosen
at random among its matches, as in the paper. ``random`` masks 3–10 tokens at a random place;
``noise`` is the control: random token ids with the FIM markers placed, labelled correct and
incorrect alternately, with no file behind it.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from tqdm import tqdm

from .corpus import Corpus, CorpusError, split_of
from .lm.fim import SpecialIds, Window, build_window, encode, special_ids
from .lm.tokenizer import tokenizer_fingerprint
from .paths import atomic_path
from .spans import TOKEN_TASKS, TREE_SITTER_TASKS, find_spans, parse_java, random_token_span

TASKS: tuple[str, ...] = (*TREE_SITTER_TASKS, *TOKEN_TASKS, "random", "noise")


@dataclass
class Scenario:
    """One line of a scenarios file. ``text[start:end] == target`` for every task but noise."""

    id: str
    task: str
    path: str | None  # relative to the source; None for noise
    split: str | None  # train/test split of the file (apmae.corpus.split_of)
    start: int | None  # character offsets of the target in the file's text
    end: int | None
    target: str
    prefix: str  # the window's prefix and suffix text, for people
    suffix: str
    input_ids: list[int]  # the prompt, exactly `window` tokens
    target_ids: list[int]
    window: int
    tokenizer: str  # tokenizer fingerprint (apmae.lm.tokenizer.tokenizer_fingerprint)
    label: bool | None = None  # forced correctness of noise scenarios


@dataclass
class MiningStats:
    files_seen: int = 0
    files_skipped: dict[str, int] = field(default_factory=dict)
    by_task: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.files_skipped[reason] = self.files_skipped.get(reason, 0) + 1


def check_tasks(tasks: Iterable[str]) -> list[str]:
    tasks = list(tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task {', '.join(unknown)} (known: {', '.join(TASKS)})")
    return tasks


def scenario_id(*parts: object) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:12]


def too_short(tokenizer, text: str, window: int) -> bool:
    """Whether the file has fewer tokens than a window (the paper skips such files)."""
    if len(text) < window:
        return True
    if len(text) > window * 16:  # no Java file is that dense
        return False
    return len(encode(tokenizer, [text])[0]) < window


def _scenario(task: str, path: str, text: str, span: tuple[int, int], w: Window, tokenizer,
              sha: str) -> Scenario:
    start, end = span
    return Scenario(
        id=scenario_id(task, path, start, end), task=task, path=path, split=split_of(path),
        start=start, end=end, target=text[start:end],
        prefix=tokenizer.decode(w.prefix_ids), suffix=tokenizer.decode(w.suffix_ids),
        input_ids=w.input_ids, target_ids=w.target_ids, window=len(w.input_ids), tokenizer=sha,
    )


def noise_scenarios(n: int, tokenizer, ids: SpecialIds, window: int, seed: int,
                    sha: str) -> list[Scenario]:
    """The control: ``window`` random ids (FIM markers placed), labels alternating."""
    rng = random.Random(f"noise-{seed}")
    special = set(tokenizer.all_special_ids)
    ordinary = [i for i in range(len(tokenizer)) if i not in special]
    out = []
    for k in range(n):
        body = [rng.choice(ordinary) for _ in range(window - (3 if ids.fim else 0))]
        target = rng.choice(ordinary)
        if ids.fim:
            cut = rng.randrange(1, len(body))
            input_ids = [ids.prefix, *body[:cut], ids.suffix, *body[cut:], ids.middle]
        else:
            input_ids = body
        out.append(Scenario(
            id=scenario_id("noise", seed, k), task="noise", path=None, split=None, start=None,
            end=None, target=tokenizer.decode([target]), prefix="", suffix="",
            input_ids=input_ids, target_ids=[target], window=window, tokenizer=sha,
            label=k % 2 == 0,
        ))
    return out


def mine(source: str, tokenizer, tasks: Sequence[str] = TASKS, per_task: int = 100,
         seed: int = 0, window: int = 256, split: str | None = None,
         stats: MiningStats | None = None) -> Iterator[Scenario]:
    """Yield up to ``per_task`` scenarios per task from ``source`` (see module docstring)."""
    tasks = check_tasks(tasks)
    stats = stats if stats is not None else MiningStats()
    ids = special_ids(tokenizer)
    sha = tokenizer_fingerprint(tokenizer)
    corpus = Corpus(source, split=split)  # type: ignore[arg-type]
    files = list(corpus)
    for reason, count in corpus.stats.skipped.items():
        stats.files_skipped[reason] = stats.files_skipped.get(reason, 0) + count
    if not files:
        raise CorpusError(f"{source}: no readable Java files"
                          + (f" in the {split} split" if split else ""))
    rng = random.Random(seed)
    rng.shuffle(files)
    need = {t: per_task for t in tasks if t != "noise"}
    bar = tqdm(total=sum(need.values()), desc="mining", unit="scenario")
    for f in files:
        if not any(need.values()):
            break
        stats.files_seen += 1
        if too_short(tokenizer, f.text, window):
            stats.skip("shorter than the window")
            continue
        tree = parse_java(f.text)
        if tree is None:
            stats.skip("does not parse")
            continue
        for task in [t for t, n in need.items() if n > 0]:
            if task == "random":
                span = random_token_span(tokenizer, f.text, rng)
            else:
                spans = find_spans(task, f.text, tree)
                span = rng.choice(spans) if spans else None
            if span is None:
                continue
            w = build_window(tokenizer, f.text, span[0], span[1], window, ids)
            if w is None or not w.target_ids:
                continue
            need[task] -= 1
            stats.by_task[task] = stats.by_task.get(task, 0) + 1
            bar.update(1)
            yield _scenario(task, f.path, f.text, span, w, tokenizer, sha)
    bar.close()
    if "noise" in tasks:
        noise = noise_scenarios(per_task, tokenizer, ids, window, seed, sha)
        stats.by_task["noise"] = len(noise)
        yield from noise


def write_scenarios(scenarios: Iterable[Scenario], out: Path) -> int:
    """Write JSONL atomically: an interrupted mine leaves no half-written file."""
    n = 0
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for s in scenarios:
            fh.write(json.dumps(asdict(s), ensure_ascii=False) + "\n")
            n += 1
    return n


def read_scenarios(path: Path) -> Iterator[Scenario]:
    """Stream scenarios from a JSONL file; a malformed line is an error naming the line."""
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield Scenario(**json.loads(line))
            except (json.JSONDecodeError, TypeError) as e:
                raise ValueError(f"{path}:{i}: not a scenario ({e})") from e
