"""Which attention rows, summarised how, carry the correctness signal: a held-out comparison.

    python -m bench.decision_rows [--run default] [--bootstrap 300] [--json]

The predictor reads statistics of the predicting row (:mod:`apmae.atlas.rows`). This asks
whether more of the pattern helps: the predicting row as shares over key bins placed relative
to the hole (log-spaced on the prefix side, a few on the suffix side), and the rows of two other
query positions that see the hole's context, the prefix's last token (what a left-to-right
reading would predict next) and the suffix's last token. Every kind is fitted as the held-out
predictor is (:class:`apmae.atlas.heldout.Classifier`, train split) and scored on the held-out
split beside the model's own confidence, with 95% bootstrap intervals. Patterns are recomputed
by one prefill pass per batch, so any extracted run works, kept patterns or not.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from apmae.atlas.heldout import Classifier, Features, HeldoutConfig, _prior, chosen_capacity, score_table
from apmae.atlas.rows import hole_of, row_stats
from apmae.capture import recompute_patterns
from apmae.store.format import packed_positions
from apmae.lm.fim import special_ids
from apmae.lm.load import load_target
from apmae.run import Run

#: Key bins of the predicting row, as (first, last) distances from the hole; the first token
#: and the predicting position itself are bins of their own.
LEFT = ((1, 2), (3, 4), (5, 8), (9, 16), (17, 32), (33, 64), (65, 1 << 30))
RIGHT = ((1, 2), (3, 8), (9, 32), (33, 1 << 30))


def row(packed: torch.Tensor, q: int, T: int) -> torch.Tensor:
    """``[..., T*(T+1)/2]`` packed log-probs -> ``[..., q + 1]`` probabilities of query ``q``."""
    rows, cols = packed_positions(T)
    at = torch.nonzero(rows == q).flatten()
    return packed[..., at[torch.argsort(cols[at])]].float().exp()


def binned(p: torch.Tensor, hole: int) -> torch.Tensor:
    """The predicting row ``p`` (``[..., T]``) as its shares over :data:`LEFT` and :data:`RIGHT`,
    the first token, the hole's marker and itself."""
    T = p.shape[-1]
    k = torch.arange(T)
    left, right = hole - k, k - hole
    parts = [p[..., 0]]
    parts += [(p * ((left >= a) & (left <= b) & (k > 0))).sum(-1) for a, b in LEFT]
    parts.append(p[..., hole] if hole < T - 1 else torch.zeros(p.shape[:-1]))
    parts += [(p * ((right >= a) & (right <= b) & (k < T - 1))).sum(-1) for a, b in RIGHT]
    parts.append(p[..., T - 1])
    return torch.stack(parts, -1)


def shape(p: torch.Tensor) -> torch.Tensor:
    """Entropy, maximum, distance of the maximum, first-token and self weight of rows ``p``."""
    T = p.shape[-1]
    top, at = p.max(-1)
    entropy = -(p * p.clamp_min(1e-30).log()).sum(-1)
    return torch.stack([entropy, top, (T - 1 - at).float(), p[..., 0], p[..., -1]], -1)


def features(run: Run, batch_size: int = 16) -> tuple[list, dict[str, np.ndarray]]:
    """The run's scenarios and, per kind, ``[scenarios, layers * heads * k]`` features."""
    target = load_target(run.meta()["model"])
    suffix = special_ids(target.tokenizer).suffix
    scenarios = run.scenarios()
    T = len(scenarios[0].input_ids)
    out: dict[str, list] = {"row_stats": [], "bins": [], "prefix_end": [], "suffix_end": []}
    for start in tqdm(range(0, len(scenarios), batch_size), desc="patterns", unit="batch"):
        batch = scenarios[start:start + batch_size]
        packed = recompute_patterns(target, batch).float()
        holes = [hole_of(s.input_ids, suffix) for s in batch]
        out["row_stats"].append(row_stats(packed, holes).flatten(1).numpy())
        for i, h in enumerate(holes):
            out["bins"].append(binned(row(packed[i], T - 1, T), h).flatten().numpy())
            out["prefix_end"].append(shape(row(packed[i], h - 1, T)).flatten().numpy())
            out["suffix_end"].append(shape(row(packed[i], T - 2, T)).flatten().numpy())
    return scenarios, {k: np.concatenate(v) if k == "row_stats" else np.stack(v) for k, v in out.items()}


@dataclass
class Labelled:
    """A run's scenarios as the held-out protocol sees them: task, first-token correctness, the
    non-noise train and held-out rows, and the model's confidence (not attention) as features."""

    tasks: np.ndarray
    y: np.ndarray
    train: np.ndarray
    test: np.ndarray
    confidence: Features


def labelled(run: Run, scenarios: list) -> Labelled:
    results = {r["id"]: r for r in run.results()}
    tasks = np.array([s.task for s in scenarios])
    split = np.array([results[s.id]["split"] or "" for s in scenarios])
    return Labelled(tasks, np.array([bool(results[s.id]["correct_first_token"]) for s in scenarios]),
                    np.flatnonzero((tasks != "noise") & (split == "train")),
                    np.flatnonzero((tasks != "noise") & (split == "test")),
                    Features(np.array([[results[s.id]["top1_prob"], results[s.id]["entropy"]]
                                       for s in scenarios], np.float32)))


FIGURES = ("auc", "auc_ci", "within_task_auc", "within_task_auc_ci")


def fit_and_score(name: str, f: Features, lab: Labelled, rows: np.ndarray,
                  cfg: HeldoutConfig) -> tuple[np.ndarray, dict]:
    """The held-out predictor of kind ``name`` fitted on ``rows``, scored on the held-out split:
    its probabilities and its figures (:data:`FIGURES`), each task's prior from ``rows``."""
    tasks, y, test = lab.tasks, lab.y, lab.test
    prior, overall = _prior(tasks[rows], y[rows]), float(y[rows].mean())
    base = {t: prior.get(t, overall) for t in set(tasks[test].tolist())}
    capacity = chosen_capacity(name, f.rows(rows), tasks[rows], y[rows], cfg)  # as the predictor stage
    model = Classifier(name, cfg, sorted(set(tasks[rows].tolist())), capacity).fit(f.rows(rows), tasks[rows],
                                                                                   y[rows])
    p = model.predict(f.rows(test), tasks[test])
    table = score_table(y[test], p, tasks[test], base, cfg)
    return p, {**{k: table[k] for k in FIGURES}, "capacity": list(capacity)}


def compare(run: Run, replicates: int) -> dict:
    scenarios, f = features(run)
    lab = labelled(run, scenarios)
    heads = run.meta()["layers"] * run.meta()["heads"]
    per = {k: Features.per_head(v.astype(np.float32), heads) for k, v in f.items()}
    kinds = {"row_stats": per["row_stats"], "bins": per["bins"],
             "row_stats+bins": Features.join(per["row_stats"], per["bins"]),
             "row_stats+prefix_end": Features.join(per["row_stats"], per["prefix_end"]),
             "all": Features.join(*per.values()),
             "lm_confidence (not attention)": lab.confidence}
    cfg = HeldoutConfig(bootstrap=replicates)
    table = {name: fit_and_score(name, x, lab, lab.train, cfg)[1] for name, x in kinds.items()}
    return {"run": run.name, "n_train": int(len(lab.train)), "n_test": int(len(lab.test)), "kinds": table}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="default")
    ap.add_argument("--bootstrap", type=int, default=300)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = compare(Run(args.run), args.bootstrap)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{out['run']}: fitted on {out['n_train']} train-split scenarios, scored on {out['n_test']} held-out")
    for name, t in out["kinds"].items():
        print(f"{name:32s} AUC {t['auc']:.3f} {t['auc_ci']}  within task {t['within_task_auc']:.3f} "
              f"{t['within_task_auc_ci']}")


if __name__ == "__main__":
    main()
