"""Run the target model over scenarios: completion, correctness, every head's pattern.

One prefill pass per batch of windows captures all layers × heads (``record_attention``) and
gives the first generated token; greedy decoding then continues from the KV cache, outside
the recorder, until every row has ended, spent its budget (the batch's longest target plus a
margin) or gone wrong (a completion that no longer matches its target cannot become exact).

Resumable and bounded: scenarios stream from their file in batches; each batch's patterns
and then its result lines are made durable before the next starts, so a rerun skips every
finished scenario and ``kill -9`` loses at most the batch in flight.
"""

from __future__ import annotations

import hashlib
import itertools
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import torch
from tqdm import tqdm

from .capture import record_attention
from .lm.load import Target
from .lm.score import exact_still_possible, greedy_continue, judge, to_completion
from .run import Run
from .scenarios import Scenario, read_scenarios
from .store.arrays import StoreMeta

KEEP_HELP = "which patterns to store: all | sample:N (a bounded sample) | none"


@dataclass
class ExtractConfig:
    batch_size: int = 8
    keep: str = "all"  # all | sample:N | none (patterns can be recomputed by one forward pass)
    extra_tokens: int = 2  # decoding budget beyond the target's length (+ end-of-text)

    def keep_limit(self) -> int | None:
        """How many scenarios' patterns to keep; None for all."""
        if self.keep == "all":
            return None
        if self.keep == "none":
            return 0
        if self.keep.startswith("sample:") and self.keep[7:].isdigit():
            return int(self.keep[7:])
        raise ValueError(f"--keep {self.keep!r}: expected all, none or sample:N")


def kept_ids(ids: list[str], limit: int | None) -> set[str]:
    """The scenarios whose patterns are kept: the ``limit`` smallest id hashes, so the same
    ones on every rerun and exactly ``limit`` of them (spread over tasks like the file)."""
    if limit is None:
        return set(ids)
    return set(sorted(ids, key=lambda i: hashlib.sha1(i.encode()).digest())[:limit])


def _batches(items: Iterable[Scenario], n: int) -> Iterator[list[Scenario]]:
    it = iter(items)
    while batch := list(itertools.islice(it, n)):
        yield batch


def check_scenarios(path: Path, target: Target, cfg: ExtractConfig) -> tuple[list[str], int]:
    """Validate the file against the model before any work; returns its ids and window."""
    sha, ids, windows, longest = target.tokenizer_sha, [], set(), 0
    for s in read_scenarios(path):
        if s.tokenizer != sha:
            raise ValueError(f"{path}: scenario {s.id} was mined with another tokenizer "
                             f"({s.tokenizer}, the model's is {sha}); mine again with this --model")
        windows.add(len(s.input_ids))
        longest = max(longest, len(s.target_ids))
        ids.append(s.id)
    if not ids:
        raise ValueError(f"{path}: no scenarios")
    if len(windows) > 1:
        raise ValueError(f"{path}: scenarios of different window lengths {sorted(windows)}")
    window = windows.pop()
    target.check_window(window, extra=longest + cfg.extra_tokens)
    return ids, window


@torch.inference_mode()
def run_batch(target: Target, batch: list[Scenario], cfg: ExtractConfig,
              capture: bool = True) -> tuple[list[dict], torch.Tensor | None]:
    """Complete one batch; returns result rows and ``[batch, layers, heads, tri]`` patterns."""
    model, ids = target.model, target.ids
    input_ids = torch.tensor([s.input_ids for s in batch], device=model.device)
    with record_attention(model) if capture else nullcontext() as rec:
        out = model(input_ids=input_ids, use_cache=True, logits_to_keep=1)
    patterns = rec.take() if capture else None
    last = out.logits[:, -1].float()  # [batch, vocab]
    logprobs = last.log_softmax(-1)
    stops = [i for i in (ids.eos, ids.prefix, ids.suffix, ids.middle, ids.pad) if i is not None]
    budget = max(len(s.target_ids) for s in batch) + cfg.extra_tokens
    viable = exact_still_possible(target.tokenizer, [s.target for s in batch])
    rows = greedy_continue(model, out.past_key_values, last, budget, stops, viable)
    results = []
    for s, row, lp in zip(batch, rows, logprobs):
        c = to_completion(target.tokenizer, row, stops)
        exact, first = judge(c, s.target, s.target_ids, fim=ids.fim)
        if s.task == "noise":  # the control's labels are assigned, not judged
            exact = first = bool(s.label)
        results.append({
            "id": s.id, "task": s.task, "split": s.split, "path": s.path,
            "completion": c.text, "finished": c.finished,
            "correct_exact": exact, "correct_first_token": first,
            "first_token": c.first_token, "target_first_token": s.target_ids[0],
            "logprob_target_first": round(lp[s.target_ids[0]].item(), 4),
        })
    return results, patterns


@torch.inference_mode()
def recompute_patterns(target: Target, batch: list[Scenario]) -> torch.Tensor:
    """``[batch, layers, heads, tri]`` patterns of scenarios whose patterns were not kept: the
    same prefill pass that extraction captured them from."""
    input_ids = torch.tensor([s.input_ids for s in batch], device=target.model.device)
    with record_attention(target.model) as rec:
        target.model(input_ids=input_ids, use_cache=False, logits_to_keep=1)
    return rec.take()


def extract(run: Run, scenarios_path: Path, target: Target, cfg: ExtractConfig) -> int:
    """Extract every unfinished scenario of the file into ``run``; returns how many were done."""
    ids, window = check_scenarios(scenarios_path, target, cfg)
    keep = kept_ids(ids, cfg.keep_limit())
    done = {r["id"] for r in run.results()}
    todo = (s for s in read_scenarios(scenarios_path) if s.id not in done)
    store = None
    if keep:
        store = run.pattern_store(StoreMeta(layers=target.layers, heads=target.heads,
                                            window=window, model=target.name))
    run.update_meta(model=target.name, tokenizer=target.tokenizer_sha, layers=target.layers,
                    heads=target.heads, scenarios=str(scenarios_path), keep=cfg.keep)
    n = 0
    bar = tqdm(total=len(ids), initial=len(done), desc="extract", unit="scenario")
    for batch in _batches(todo, cfg.batch_size):
        # a crash between the store and the results leaves patterns already stored: keep those
        sel = [i for i, s in enumerate(batch) if s.id in keep and not store.has(s.id)]
        results, patterns = run_batch(target, batch, cfg, capture=bool(sel))
        if sel:
            store.append([batch[i].id for i in sel], patterns[sel].cpu().numpy())
        run.append_results(results)
        n += len(batch)
        bar.update(len(batch))
    bar.close()
    return n
