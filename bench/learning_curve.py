"""Does the attention-only predictor need more data? Its held-out AUC against training size.

    python -m bench.learning_curve --run lc300 [--fractions 0.25,0.5,1] [--seeds 3] [--json]

The run is any extracted run with both splits (``apmae demo --run lc300 --per-task 300
--no-atlas --build-only`` mines 300 train-split scenarios per task and the default held-out
ones). The predicting row's statistics (:mod:`apmae.atlas.rows`) are the ones encoding stored,
or computed from one prefill per batch for a run not encoded; the held-out predictor
(:class:`apmae.atlas.heldout.Classifier`, at the capacity its train-split CV picks) is fitted on a
per-task share of the train split, several seeds of it, and scored on the whole held-out split,
beside the model's own confidence fitted on the same rows, and the paired difference of the two
(one set of bootstrap replicates for both). If the AUC still climbs at the full size, more
training scenarios are what the predictor lacks; if it is flat, the features are.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from tqdm import tqdm

from apmae.atlas.heldout import Features, HeldoutConfig, bootstrap_weights, paired_difference
from apmae.atlas.rows import hole_of, row_stats
from apmae.capture import recompute_patterns
from apmae.lm.fim import special_ids
from apmae.lm.load import load_target
from apmae.run import Run

from .decision_rows import fit_and_score, labelled


def row_features(run: Run, batch_size: int = 16) -> tuple[list, np.ndarray]:
    """The run's scenarios and their ``[scenarios, layers * heads * len(ROW_STATS)]`` features:
    the ones encoding stored (what the predictor stage fits on) where every scenario has them,
    else computed from one prefill per batch."""
    scenarios = run.scenarios()
    stored = run.row_stats() if (run.row_stats_path / "meta.json").exists() else None
    if stored is not None and all(stored.has(s.id) for s in scenarios):
        return scenarios, np.stack([np.asarray(stored.get(s.id), np.float32).reshape(-1) for s in scenarios])
    target = load_target(run.meta()["model"])
    suffix = special_ids(target.tokenizer).suffix
    out = []
    for start in tqdm(range(0, len(scenarios), batch_size), desc="patterns", unit="batch"):
        batch = scenarios[start:start + batch_size]
        with torch.inference_mode():
            packed = recompute_patterns(target, batch).float()
        out.append(row_stats(packed, [hole_of(s.input_ids, suffix) for s in batch]).flatten(1).numpy())
    return scenarios, np.concatenate(out)


def curve(run: Run, fractions: list[float], seeds: int, replicates: int) -> dict:
    scenarios, x = row_features(run)
    lab = labelled(run, scenarios)
    tasks, train = lab.tasks, lab.train
    kinds = {"row_stats": Features.per_head(x.astype(np.float32), run.meta()["layers"] * run.meta()["heads"]),
             "lm_confidence (not attention)": lab.confidence}
    cfg = HeldoutConfig(bootstrap=replicates)
    weights = bootstrap_weights(tasks[lab.test], replicates, seed=0)  # shared: the difference is paired
    points = []
    for fraction in fractions:
        for seed in range(seeds if fraction < 1 else 1):  # the whole split has one draw
            rng = np.random.default_rng(seed)
            rows = np.concatenate([rng.permutation(of)[:max(1, round(fraction * len(of)))]
                                   for t in np.unique(tasks[train]) if len(of := train[tasks[train] == t])])
            scores = {}
            for name, f in kinds.items():
                scores[name], figures = fit_and_score(name, f, lab, rows, cfg)
                points.append({"kind": name, "fraction": fraction, "seed": seed,
                               "n_train": int(len(rows)), **figures})
            points.append({"kind": "difference", "fraction": fraction, "seed": seed, "n_train": int(len(rows)),
                           **paired_difference(lab.y[lab.test], tasks[lab.test], *scores.values(), weights)})
    return {"run": run.name, "n_test": int(len(lab.test)), "points": points}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="default")
    ap.add_argument("--fractions", default="0.25,0.5,1")
    ap.add_argument("--seeds", type=int, default=3, help="draws of each partial training set")
    ap.add_argument("--bootstrap", type=int, default=300)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = curve(Run(args.run), [float(f) for f in args.fractions.split(",")], args.seeds, args.bootstrap)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{out['run']}: scored on {out['n_test']} held-out scenarios")
    for p in out["points"]:
        print(f"{p['kind']:30s} n={p['n_train']:5d} seed {p['seed']}  AUC {p['auc']:.3f} {p['auc_ci']}  "
              f"within {p['within_task_auc']:.3f} {p['within_task_auc_ci']}")


if __name__ == "__main__":
    main()
