"""The AP-MAE shipped with apmae (``apmae/default_mae``), trained on the default model's patterns.

A short training of the ``cpu`` preset reconstructs far worse than a long one (RESULTS.md
`mae-cpu-preset`, `mae-shipped`), and a long one is too slow for a first start. Like the
default target model, that AP-MAE is trained once and shipped: ``apmae mae ship --run R`` copies
a run's trained AP-MAE and its evaluation into ``default_mae/`` with a card, and the default run
installs it instead of training a weaker one, but only where its patterns come from the very
weights it was trained on (:func:`shipped_for`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..paths import (DEFAULT_MAE_DIR, DEFAULT_MODEL_DIR, atomic_dir, atomic_path, home_relative,
                     weights_digest)
from ..run import Run
from .config import APMAEConfig

FILES = ("config.json", "model.safetensors")
CARD = "card.json"  # what it was trained on and how; what it measured


def ship(run: Run, dest: Path = DEFAULT_MAE_DIR) -> dict:
    """Copy ``run``'s trained and evaluated AP-MAE into ``dest`` with its card; returns the card.
    Only an AP-MAE of the default model's patterns: the card pins those weights."""
    src = run.mae_path
    if not (src / "model" / "model.safetensors").exists() or not (src / "eval.json").exists():
        raise ValueError(f"run {run.name}: ship a trained and evaluated AP-MAE "
                         "(`apmae mae train`, then `apmae mae eval`)")
    if run.meta().get("model") != "default":
        raise ValueError(f"run {run.name}: its patterns are {run.meta().get('model')!r}'s; only an "
                         "AP-MAE of the default model's patterns is shipped")
    train = json.loads((src / "train_config.json").read_text())
    log = json.loads((src / "train_log.json").read_text())
    evaluation = json.loads((src / "eval.json").read_text())
    if "generalization" in evaluation:  # the other model's folder, not as this machine names it
        gen = evaluation["generalization"]
        gen["other_model"] = home_relative(gen["other_model"])
    card = {"target_weights": weights_digest(DEFAULT_MODEL_DIR),
            "image_size": APMAEConfig.from_pretrained(src / "model").image_size,
            "train_config": {k: v for k, v in train.items() if k not in ("run", "threads", "device")},
            "train_seconds": round(log["seconds"], 1), "steps": log["step"],
            "eval": evaluation}
    with atomic_dir(dest) as tmp:
        for name in FILES:
            shutil.copy2(src / "model" / name, tmp / name)
        (tmp / CARD).write_text(json.dumps(card, indent=2))
        (tmp / "README.md").write_text(render_card(card))
    return card


def render_card(card: dict) -> str:
    """The shipped AP-MAE's README: how to make it again and what it measured."""
    t, rec = card["train_config"], card["eval"]["reconstruction"]
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in t.items()
                     if k in ("preset", "image_size", "steps", "lr", "batch_size", "seed") and v)
    gen = card["eval"].get("generalization")
    lines = [
        "# apmae default AP-MAE",
        "",
        f"AP-MAE (`{t['preset']}` preset, {card['image_size']} px images, {t['parameters']:,} parameters) "
        f"trained on the default model's attention patterns (weights `{card['target_weights']}`): "
        f"{t['train_scenarios']:,} train-split scenarios, {card['steps']:,} steps, "
        f"{card['train_seconds'] / 60:.0f} min on 2 CPU cores.",
        "",
        "## Reproduce",
        "",
        "```",
        "apmae demo --run big --per-task 300 --keep all --no-atlas --build-only",
        f"apmae mae train --run big {flags}",
        "apmae mae eval --run big --other-run other-s1  # a run of a second model, see README",
        "apmae mae ship --run big",
        "```",
        "",
        "## Held-out reconstruction",
        "",
        f"Masked MSE {rec['mse']:.5f} on {rec['n_patterns']:,} test-split patterns: "
        f"**{rec['ratio_to_best_baseline']:.3f}x** the best baseline's ({rec['best_baseline']}, "
        f"{rec['baselines'][rec['best_baseline']]:.5f}).",
        "",
        "| layer | AP-MAE / head mean |",
        "|---|---|",
        *(f"| {l} | {v['model'] / v['head_mean']:.3f} |" for l, v in rec["by_layer"].items()),
    ]
    if gen:
        lines += ["", f"On {gen['other_run']} (a model it never saw): masked MSE "
                      f"{gen['mse_other_model']:.5f} against {gen['mse_same_model']:.5f} here "
                      f"({gen['degradation']:+.1%})."]
    return "\n".join(lines) + "\n"


def shipped_for(run: Run, source: Path = DEFAULT_MAE_DIR) -> Path | None:
    """``source`` if its AP-MAE fits ``run``'s patterns (:func:`shipped_fits`), else None."""
    store = run.pattern_store()
    return shipped_fits(run.meta().get("model"), store.meta.window if store else None, source)


def shipped_fits(model: str | None, window: int | None, source: Path = DEFAULT_MAE_DIR) -> Path | None:
    """``source`` if its AP-MAE was trained on patterns of ``model``'s weights (the default
    model, unchanged since) and its images fit a ``window``-token pattern, else None; known
    before extraction, so extraction can encode as it goes."""
    if not (source / CARD).exists() or model != "default" or not window:
        return None
    card = json.loads((source / CARD).read_text())
    size = APMAEConfig.from_pretrained(source).image_size
    if card["target_weights"] != weights_digest(DEFAULT_MODEL_DIR) or window % size:
        return None
    return source


def install(run: Run, source: Path) -> Path:
    """Put the shipped AP-MAE in ``run`` as its own (``mae/model``, and its card beside it)."""
    out = run.mae_path
    with atomic_dir(out / "model") as tmp:
        for name in FILES:
            shutil.copy2(source / name, tmp / name)
    with atomic_path(out / "shipped.json") as tmp:
        tmp.write_text((source / CARD).read_text())
    return out / "model"
