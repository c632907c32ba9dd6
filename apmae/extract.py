"""Run the target model over scenarios: completion, correctness, every head's pattern.

One prefill pass per batch of windows captures all layers × heads (``record_attention``) and
gives the first generated token; greedy decoding then continues from the KV cache, outside
the recorder, until every row has ended, spent its budget (the batch's longest target plus a
margin) or gone wrong (a completion that no longer matches its target cannot become exact).

Resumable and bounded: scenarios stream from their file in batches; each batch's patterns
and then its result lines are made durable (by a writer thread, while the next batch computes,
in order), so a rerun skips every finished scenario and ``kill -9`` loses at most the two
batches in flight.

Sharded under ``torchrun``: rank r takes every world-th batch from batch r into its own part of
the run (``parts/rank-<r>``, resumable the same way); once every rank is done, rank 0 merges
the parts into the run in the file's order and removes them. The merged run is the one a
single process writes, byte for byte.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from .capture import record_attention
from .configs import PRECISIONS, ExtractConfig
from .distributed import rank_and_world
from .lm.load import TargetModel
from .lm.score import exact_still_possible, greedy_continue, judge, kv_cache, to_completion
from .paths import fsync_dir
from .run import Run
from .scenarios import Scenario, read_scenarios
from .store.arrays import ArrayStore, StoreMeta
from .store.format import decode_codes

#: How long a rank that finished its share waits for the others: shares can take hours apart
#: (a resumed rank may have nothing left), and torchrun ends every rank when one fails.
SHARE_WAIT = timedelta(days=7)
#: Takes every extracted batch's patterns (``[batch, layers, heads, tri]`` log-probabilities)
#: while they are in memory: the atlas's encoder, so that it needs no second forward pass.
Sink = Callable[[list[Scenario], torch.Tensor], None]


def kept_ids(ids: list[str], limit: int | None) -> set[str]:
    """The scenarios whose patterns are kept: the ``limit`` smallest id hashes, so the same
    ones on every rerun and exactly ``limit`` of them (spread over tasks like the file)."""
    if limit is None:
        return set(ids)
    return set(sorted(ids, key=lambda i: hashlib.sha1(i.encode()).digest())[:limit])


def store_meta(cfg: ExtractConfig, run: Run, target: TargetModel, window: int) -> StoreMeta:
    """The format of the run's pattern store: an existing store's precision, else ``cfg``'s."""
    if cfg.precision not in PRECISIONS:
        raise ValueError(f"--precision {cfg.precision!r}: expected {' or '.join(PRECISIONS)}")
    dtype, log_range = PRECISIONS[cfg.precision]
    existing = run.pattern_store()
    if existing is not None:
        dtype, log_range = existing.meta.dtype, existing.meta.log_range
    return StoreMeta(layers=target.layers, heads=target.heads, window=window,
                     model=target.name, dtype=dtype, log_range=log_range)


def _batches(items: Iterable[Scenario], n: int) -> Iterator[list[Scenario]]:
    it = iter(items)
    while batch := list(itertools.islice(it, n)):
        yield batch


def check_scenarios(path: Path, lm: TargetModel, cfg: ExtractConfig) -> tuple[list[str], int]:
    """Validate the file against the model before any work; returns its ids and window."""
    sha, ids, windows, longest = lm.tokenizer_sha, [], set(), 0
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
    lm.check_window(window, extra=longest + cfg.extra_tokens)
    return ids, window


@torch.inference_mode()
def run_batch(lm: TargetModel, batch: list[Scenario], cfg: ExtractConfig,
              capture: StoreMeta | None = None) -> tuple[list[dict], torch.Tensor | None]:
    """Complete one batch; returns result rows and, with ``capture`` (the store's format),
    ``[batch, layers, heads, tri]`` patterns already in that format."""
    model, ids = lm.model, lm.ids
    input_ids = torch.tensor([s.input_ids for s in batch], device=model.device)
    recorder = record_attention(model, log_range=capture.log_range) if capture else nullcontext()
    with recorder as rec:
        out = model(input_ids=input_ids, use_cache=True, logits_to_keep=1)
    patterns = rec.take() if capture else None
    last = out.logits[:, -1].float()  # [batch, vocab]
    logprobs = last.log_softmax(-1)
    stops = [i for i in (ids.eos, ids.prefix, ids.suffix, ids.middle, ids.pad) if i is not None]
    budget = max(len(s.target_ids) for s in batch) + cfg.extra_tokens
    viable = exact_still_possible(lm.tokenizer, [s.target for s in batch])
    rows = greedy_continue(model, kv_cache(out), last, budget, stops, viable)
    results = []
    for s, row, lp in zip(batch, rows, logprobs):
        c = to_completion(lm.tokenizer, row, stops)
        exact, first = judge(c, s.target, s.target_ids, fim=ids.fim)
        if s.task == "noise":  # the control's labels are assigned, not judged
            exact = first = bool(s.label)
        results.append({
            "id": s.id, "task": s.task, "split": s.split, "path": s.path,
            "completion": c.text, "finished": c.finished,
            "correct_exact": exact, "correct_first_token": first,
            "first_token": c.first_token, "target_first_token": s.target_ids[0],
            "logprob_target_first": round(lp[s.target_ids[0]].item(), 4),
            **confidence(lp),
        })
    return results, patterns


def confidence(logprobs: torch.Tensor) -> dict[str, float]:
    """The model's own confidence in its next token (``[vocab]`` log-probs): the top-1
    probability and the entropy in nats. Read from the output, not the attention: the
    reference a predictor from attention alone is measured against."""
    return {"top1_prob": round(logprobs.max().exp().item(), 5),
            "entropy": round(-(logprobs.exp() * logprobs).nansum().item(), 5)}


def extract(run: Run, scenarios_path: Path, target: TargetModel, cfg: ExtractConfig,
            sink: Sink | None = None) -> int:
    """Extract every unfinished scenario of the file into ``run``; returns how many this
    process extracted (under torchrun: this rank's share, see :func:`_extract_share`, and no
    ``sink``: the atlas encodes the merged run afterwards)."""
    ids, window = check_scenarios(scenarios_path, target, cfg)
    keep = kept_ids(ids, cfg.keep_limit())
    meta = store_meta(cfg, run, target, window)
    rank, world = rank_and_world()
    # opened before any work: a store of other patterns is refused and run.json left alone
    store = run.pattern_store(meta) if keep and rank == 0 else None
    if rank == 0:
        run.update_meta(model=target.name, tokenizer=target.tokenizer_sha, layers=target.layers,
                        heads=target.heads, scenarios=str(scenarios_path), keep=cfg.keep,
                        model_dtype=str(target.dtype).removeprefix("torch."))
    if world > 1:
        return _extract_share(run, scenarios_path, ids, keep, meta, target, cfg, rank, world)
    done = {r["id"] for r in run.results()}
    todo = (s for s in read_scenarios(scenarios_path) if s.id not in done)
    bar = tqdm(total=len(ids), initial=len(done), desc="extract", unit="scenario")
    return _extract_batches(run, store, _batches(todo, cfg.batch_size), keep, target, cfg, bar,
                            meta, sink)


def _extract_batches(run: Run, store: ArrayStore | None, batches: Iterable[list[Scenario]],
                     keep: set[str], target: TargetModel, cfg: ExtractConfig, bar: tqdm,
                     meta: StoreMeta, sink: Sink | None = None) -> int:
    """Extract ``batches`` into ``run``; returns how many scenarios were done.

    Each batch's patterns and then its results are made durable (written and fsynced) by one
    writer thread while the next batch computes: the disk's wait overlaps the forward pass
    instead of adding to it. Batches are written in order, and a batch is only handed over
    once the previous one is durable, so a crash loses at most the two batches in flight.
    """
    n = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="apmae-writer") as writer:
        written: Future | None = None
        for batch in batches:
            # a crash between the store and the results leaves patterns already stored: keep those
            sel = [i for i, s in enumerate(batch) if s.id in keep and not store.has(s.id)]
            results, patterns = run_batch(target, batch, cfg, capture=meta if sel or sink else None)
            if sink is not None:
                sink(batch, torch.from_numpy(decode_codes(patterns.cpu().numpy(), meta.dtype, meta.log_range)))
            if written is not None:
                written.result()  # the previous batch is durable (or its error is raised here)
            ids = [batch[i].id for i in sel]
            kept = None if not sel else patterns if len(sel) == len(batch) else patterns[sel]
            written = writer.submit(_write_batch, run, store, ids, kept, results)
            n += len(batch)
            bar.update(len(batch))
        if written is not None:
            written.result()
    bar.close()
    return n


def _write_batch(run: Run, store: ArrayStore | None, ids: list[str], patterns: torch.Tensor | None,
                 results: list[dict]) -> None:
    """One batch made durable: its patterns, then its results (the record a rerun skips by)."""
    if ids:
        store.append(ids, patterns)
    run.append_results(results)


def _extract_share(run: Run, scenarios_path: Path, ids: list[str], keep: set[str],
                   meta: StoreMeta, target: TargetModel, cfg: ExtractConfig, rank: int,
                   world: int) -> int:
    """This rank's share into its part of ``run``, then, once every rank is done, rank 0's
    merge; returns how many scenarios this rank extracted.

    The share is whole batches of the single-process batching (batch k goes to rank k % world),
    not every world-th scenario: a batch's decoding budget is its longest target and float
    kernels may depend on the batch's shape, so only the same batches give the same
    completions and patterns. Scenarios finished in the run or in any part (an earlier launch,
    of any world size) are skipped.
    """
    done = {r["id"] for p in (run, *run.parts()) for r in p.results()}
    share = [i for k, i in enumerate(ids) if k // cfg.batch_size % world == rank]
    left = sum(i not in done for i in share)
    n = 0
    if left:  # a finished share leaves no part behind
        part = run.part(rank)
        batches = (b for k, b in enumerate(_batches(read_scenarios(scenarios_path), cfg.batch_size))
                   if k % world == rank)
        todo = (t for b in batches if (t := [s for s in b if s.id not in done]))
        bar = tqdm(total=len(share), initial=len(share) - left, desc=f"extract rank {rank}",
                   unit="scenario")
        n = _extract_batches(part, part.pattern_store(meta) if keep else None, todo, keep,
                             target, cfg, bar, meta)
    dist.barrier(timeout=SHARE_WAIT)
    if rank == 0:
        merge_parts(run, scenarios_path, keep, meta, cfg.batch_size)
    return n


def merge_parts(run: Run, scenarios_path: Path, keep: set[str], meta: StoreMeta,
                batch_size: int) -> None:
    """Append the parts' results and patterns to ``run`` in the file's order, then delete them.

    Batch by batch as a single process extracts (patterns, then results, each durable), so the
    merged files are the single-process ones byte for byte; a part's shard that is exactly a
    batch's patterns (the rule) is hard-linked, not copied. Scenarios already in the run are
    skipped: a merge killed halfway resumes, and a second merge adds nothing.
    """
    shutil.rmtree(_removed_parts(run), ignore_errors=True)  # a removal a kill cut short
    parts = run.parts()
    if not parts:
        return
    rows = {r["id"]: r for p in parts for r in p.results()}
    stored = {i: src for p in parts if (src := p.pattern_store()) is not None for i in src.ids()}
    merged = {r["id"] for r in run.results()}
    store = run.pattern_store(meta) if keep else None
    for batch in _batches(read_scenarios(scenarios_path), batch_size):
        new = [s.id for s in batch if s.id not in merged]
        missing = [i for i in new if i not in rows]
        if missing:
            raise ValueError(f"run {run.name}: scenario {missing[0]} is in no part of "
                             f"{run.parts_path}; rerun the extraction to finish it")
        sel = [i for i in new if i in keep and i in stored and not store.has(i)]
        if sel and not store.link(sel, stored[sel[0]]):
            store.append(sel, np.stack([stored[i].get(i) for i in sel]))
        if new:
            run.append_results([rows[i] for i in new])
    _remove_parts(run)


def _removed_parts(run: Run) -> Path:
    return run.path / ".parts.removed"


def _remove_parts(run: Run) -> None:
    """Delete the merged parts once the merge survives a power loss (its folders synced too).
    Renamed away first, so a kill midway leaves no half-deleted part for a rerun to read."""
    for folder in (run.path, run.patterns_path, run.patterns_path / "shards"):
        if folder.exists():
            fsync_dir(folder)
    os.replace(run.parts_path, _removed_parts(run))
    fsync_dir(run.path)
    shutil.rmtree(_removed_parts(run))
