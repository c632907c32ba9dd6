"""Embed every (scenario, layer, head) pattern of a run with AP-MAE: ``apmae encode``.

Embeddings go to an array store beside the patterns (``runs/<name>/embeddings``: one float16
``[layers, heads, hidden]`` entry per scenario), with a few statistics of each raw pattern
(``pattern_stats``: the features of a predictor that uses no AP-MAE) and of each head's
predicting row (``row_stats``, :mod:`apmae.atlas.rows`). Scenarios whose patterns were not kept are
recomputed by the same prefill pass extraction ran, so a run that keeps no patterns at all
still gets an embedding for every head of every scenario. Resumable like extraction: a rerun
skips encoded scenarios, and a crash loses at most the batch in flight.
"""

from __future__ import annotations

import functools
import shutil
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from ..capture import recompute_patterns
from ..configs import EncodeConfig
from ..store.format import packed_positions, tril_window
from ..lm.fim import special_ids
from ..lm.load import TargetModel, load_target, load_tokenizer
from ..mae.model import APMAEModel
from ..paths import weights_digest
from ..run import Run
from ..scenarios import Scenario
from ..store.arrays import ArrayStore, StoreMeta
from .rows import ROW_STATS, hole_of, row_stats


#: Per-head statistics of a raw pattern, the features of the predictor's no-AP-MAE baseline.
STATS = ("entropy", "distance", "first_token", "self")


@torch.inference_mode()
def pattern_stats(packed: torch.Tensor) -> torch.Tensor:
    """``[..., L]`` packed log-prob patterns -> ``[..., 4]``, each a mean over query rows: the
    row's entropy (nats), its mean attention distance ``q - k`` (tokens), the weight on the
    first token and the weight on itself."""
    lead, L = packed.shape[:-1], packed.shape[-1]
    T = tril_window(L)
    distance_of, first_token, diagonal = _stat_positions(T)
    logp = packed.reshape(-1, L).float()
    p = logp.exp()
    # a mean over rows of per-row sums is the whole triangle's sum over T: no unpacking
    entropy = -(p * logp).sum(-1) / T
    distance = p @ distance_of / T
    first = p.index_select(1, first_token).mean(-1)
    self_ = p.index_select(1, diagonal).mean(-1)
    return torch.stack([entropy, distance, first, self_], -1).reshape(*lead, len(STATS))


@functools.lru_cache(maxsize=8)
def _stat_positions(T: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per packed position its distance ``q - k``; the positions of key 0 and of the diagonal."""
    rows, cols = packed_positions(T)
    return (rows - cols).float(), torch.nonzero(cols == 0).squeeze(1), torch.nonzero(rows == cols).squeeze(1)


@torch.inference_mode()
def embed(model: APMAEModel, packed: torch.Tensor, cfg: EncodeConfig) -> torch.Tensor:
    """``[..., L]`` packed patterns -> ``[..., hidden]`` embeddings (float32)."""
    lead = packed.shape[:-1]
    images = model.images_from_patterns(packed.reshape(-1, packed.shape[-1]))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16 and images.device.type == "cpu"):
        out = model.encode(images, pooling=cfg.pooling)
    return out.float().reshape(*lead, -1)


def model_identity(model_dir: Path) -> str:
    """The AP-MAE that made a set of embeddings: its folder and a hash of its weights, so a
    model retrained in the same folder is a different one (for encode's and cluster's resume)."""
    return f"{model_dir}@{weights_digest(model_dir)}"


class Encoder:
    """Writes batches of a run's patterns as embeddings, pattern statistics and row statistics.

    One writer for both ways a pattern reaches AP-MAE: :func:`encode_run` after extraction, and
    extraction itself when the AP-MAE is known before it starts (the shipped one), which saves
    a second forward pass over every scenario whose patterns were not kept. A scenario already
    written is skipped, so a batch written twice (a rerun after a crash) is harmless.
    """

    def __init__(self, run: Run, cfg: EncodeConfig, model_dir: Path, layers: int, heads: int,
                 target_name: str) -> None:
        if not (model_dir / "config.json").exists():
            raise ValueError(f"{model_dir}: no trained AP-MAE (run `apmae mae train` first)")
        self.cfg = cfg
        self.model = APMAEModel.from_pretrained(model_dir, use_safetensors=True).eval()
        wanted = StoreMeta(layers=layers, heads=heads, window=0, model=model_identity(model_dir),
                           width=self.model.config.hidden_size)
        old = run.embeddings_path / "meta.json"
        if old.exists() and ArrayStore(run.embeddings_path).meta != wanted:
            # embeddings of another AP-MAE (retrained in place): start over, or clusters built
            # on them would pass for this model's
            print(f"encode: {run.embeddings_path} holds another AP-MAE's embeddings; encoding afresh",
                  file=sys.stderr)
            shutil.rmtree(run.embeddings_path)
        self.embeddings = run.embeddings(wanted)

        def side(open_: Callable[[StoreMeta], ArrayStore], width: int) -> ArrayStore:
            return open_(StoreMeta(layers=layers, heads=heads, window=0, model=target_name,
                                        dtype="float32", width=width))

        self.stats, self.rows = side(run.pattern_stats, len(STATS)), side(run.row_stats, len(ROW_STATS))
        self.suffix_id = special_ids(load_tokenizer(target_name)).suffix

    def done(self, scenario_id: str) -> bool:
        return self.embeddings.has(scenario_id) and self.rows.has(scenario_id)

    def write(self, batch: list[Scenario], patterns: torch.Tensor) -> None:
        """``patterns``: the batch's ``[batch, layers, heads, tri]`` log-probabilities."""
        ids = [s.id for s in batch]

        def fresh(store: ArrayStore) -> tuple[list[int], torch.Tensor]:
            """The batch rows ``store`` lacks, and their patterns (no copy when it lacks all)."""
            rows = [i for i, sid in enumerate(ids) if not store.has(sid)]
            return rows, patterns if len(rows) == len(ids) else patterns[rows]

        # statistics first: the embeddings and row statistics are the records a rerun checks
        rows, x = fresh(self.stats)
        if rows:
            self.stats.append([ids[i] for i in rows], pattern_stats(x).numpy())
        rows, x = fresh(self.rows)
        if rows:
            holes = [hole_of(batch[i].input_ids, self.suffix_id) for i in rows]
            self.rows.append([ids[i] for i in rows], row_stats(x, holes).numpy())
        rows, x = fresh(self.embeddings)
        if rows:
            self.embeddings.append([ids[i] for i in rows],
                                   embed(self.model, x, self.cfg).to(torch.float16).numpy())


def encode_run(run: Run, cfg: EncodeConfig, model_dir: Path | None = None,
               target: Callable[[], TargetModel] | None = None) -> int:
    """Encode every scenario of ``run`` not encoded yet; returns how many were encoded.
    ``target`` loads the run's target model, only if some patterns must be recomputed."""
    meta = run.meta()
    if "layers" not in meta:
        raise ValueError(f"run {run.name} has no extraction results (run `apmae extract` first)")
    encoder = Encoder(run, cfg, model_dir or run.mae_model_path, meta["layers"], meta["heads"],
                      meta["model"])
    patterns = run.pattern_store()
    todo = [s for s in run.scenarios() if not encoder.done(s.id)]
    loaded: TargetModel | None = None
    bar = tqdm(total=len(todo), desc="encode", unit="scenario")
    for start in range(0, len(todo), cfg.batch_size):
        batch = todo[start:start + cfg.batch_size]
        missing = [s for s in batch if patterns is None or not patterns.has(s.id)]
        packed = {s.id: torch.from_numpy(np.array(patterns.get(s.id)))
                  for s in batch if patterns is not None and patterns.has(s.id)}
        if missing:
            loaded = loaded or (target or (lambda: load_target(meta["model"], dtype=meta.get("model_dtype"))))()
            # coded as the kept ones are, then read back: one precision for every embedding
            log_range = patterns.meta.log_range if patterns is not None else 0.0
            recomputed = recompute_patterns(loaded, missing, log_range)
            if log_range:
                recomputed = torch.from_numpy(patterns.decode_values(recomputed.numpy()))
            packed.update(zip((s.id for s in missing), recomputed))
        encoder.write(batch, torch.stack([packed[s.id] for s in batch]))
        bar.update(len(batch))
    bar.close()
    return len(todo)
