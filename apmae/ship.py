"""Shipping the embedded defaults: the target model (``default_model/``) and the AP-MAE trained
on its patterns (``default_mae/``).

apmae must work on machines that cannot download a model, and an AP-MAE trained at first start
would be far weaker than one trained once at length, so both are trained once and shipped inside
the package, each with a card written from measurements, never by hand. Shipping measures what
it ships with the whole pipeline (it mines held-out scenarios, extracts and reports) and installs
into runs, so it sits here at the top, above ``lm/`` and ``mae/``, which import none of it.

- ``apmae lm ship`` (:func:`ship_lm`) copies a trained LM with its model card: the training
  command and config, the data's identity (path, size, SHA-256), wall time and loss curve from
  the training log, and per-task accuracy on held-out scenarios (files of the test split, which
  training never saw), at the final weights and at every kept snapshot (the learning curve).
- ``apmae mae ship`` (:func:`ship_mae`) copies a run's trained and evaluated AP-MAE with its card.
  A short training of the ``cpu`` preset reconstructs far worse than a long one (RESULTS.md
  `mae-cpu-preset`, `mae-shipped`), so the default run installs the shipped AP-MAE
  (:func:`install`) instead of training a weaker one, but only where its patterns come from the
  very weights it was trained on (:func:`shipped_fits`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .configs import ExtractConfig
from .corpus import data_identity
from .extract import extract
from .lm.load import load_target
from .mae.config import APMAEConfig
from .paths import (DEFAULT_MAE_DIR, DEFAULT_MODEL_DIR, atomic_dir, atomic_path, home_relative,
                    weights_digest)
from .report import task_table
from .run import Run
from .scenarios import mine, write_scenarios

# --- the target model (apmae lm ship) ----------------------------------------------------------

LM_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json")


def heldout_accuracy(model_dir: Path, scenarios: Path, batch_size: int = 16) -> dict:
    """Per-task accuracies of the model in ``model_dir`` on a scenarios file, kept beside the
    weights (``<scenarios stem>.json``) so a snapshot is evaluated once."""
    cached = model_dir / f"{scenarios.stem}.json"
    if cached.exists() and cached.stat().st_mtime >= (model_dir / "model.safetensors").stat().st_mtime:
        return json.loads(cached.read_text())
    target = load_target(str(model_dir))
    with tempfile.TemporaryDirectory() as tmp:
        run = Run("card", Path(tmp))
        extract(run, scenarios, target, ExtractConfig(batch_size=batch_size, keep="none"))
        table = task_table(run.results())
    with atomic_path(cached) as tmp_path:
        tmp_path.write_text(json.dumps(table))
    return table


def mine_heldout(model_dir: Path, source: str, out: Path, per_task: int, seed: int) -> Path:
    """Held-out scenarios, mined once per (size, seed): the file is written atomically, so an
    existing one is complete."""
    if not out.exists():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        write_scenarios(mine(source, tokenizer, per_task=per_task, seed=seed, split="test"), out)
    return out


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _loss_rows(steps: list[dict], rows: int = 20) -> str:
    """Markdown rows of the loss, each the mean over the steps since the previous row."""
    every = max(1, len(steps) // rows)
    out = []
    for i in range(every - 1, len(steps), every):
        chunk = steps[i - every + 1:i + 1]
        s = steps[i]
        out.append(f"| {s['step']} | {s['tokens'] / 1e6:.1f} | {s['seconds'] / 60:.0f} | "
                   f"{sum(x['loss'] for x in chunk) / len(chunk):.3f} | "
                   f"{sum(x['middle_loss'] for x in chunk) / len(chunk):.3f} |")
    return "\n".join(out)


def portable(config: dict) -> dict:
    """A stage's config as shipped: a warm start from a folder under ``APMAE_HOME`` is written
    ``$APMAE_HOME/...``, so the card and train_config.json name no path of this machine."""
    init = config.get("init_from")
    return {**config, "init_from": home_relative(init)} if init else config


def _command(config: dict) -> str:
    """The ``apmae lm train`` command line that reproduces ``config`` (see :func:`portable`)."""
    config = portable(config)
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in config.items()
                     if k not in ("source", "parameters") and not isinstance(v, bool) and v != "")
    bools = " ".join(f"--{'' if v else 'no-'}{k.replace('_', '-')}" for k, v in config.items()
                     if isinstance(v, bool))
    return f"apmae lm train --source {config['source']} {flags} {bools}"


def _stage_line(n: int, stage: Stage) -> str:
    c, log = stage.config, stage.log
    windows = c["window"] if not c.get("short_windows") else f"{c['window']},{c['short_windows']}"
    return (f"- Stage {n}: {log['step']} steps of {c['batch_size']} × {c['window']} prompt tokens "
            f"(prompt lengths {windows}; {log['tokens'] / 1e6:.1f}M tokens, "
            f"{log['seconds'] / 3600:.2f} h); lr {c['lr']} with {c['warmup']} warm-up steps and "
            f"a cosine to {c['min_lr']}; middle loss share {c['middle_share']:g}, "
            f"{int(100 * c['plain_share'])}% plain left-to-right windows"
            + (f"; {int(100 * c['task_share'])}% of the middles a scenario task's span (syntax-aware)"
               if c.get("task_share") else "")
            + f"; seed {c['seed']}"
            + (f" (from the weights of stage {n - 1}, fresh optimizer)" if c.get("init_from") else ""))


def render_lm_card(stages: list[Stage], final: dict, curve: dict[int, dict],
                data: dict, per_task: int) -> str:
    """The model card (README.md of the shipped folder), in Markdown."""
    config, log = stages[-1].config, stages[-1].log
    offset = sum(s.log["step"] for s in stages[:-1])
    loss_rows = _loss_rows([{**row, "step": row["step"] + before["step"],
                             "tokens": row["tokens"] + before["tokens"],
                             "seconds": row["seconds"] + before["seconds"]}
                            for i, st in enumerate(stages)
                            for before in [_totals(stages[:i])] for row in st.log["log"]])
    total = _totals(stages)
    tasks = list(final["by_task"])
    acc_rows = "\n".join(
        f"| {t} | {r['n']} | {_pct(r['accuracy_first_token'])} | {_pct(r['accuracy_exact'])} |"
        for t, r in final["by_task"].items())
    o = final["overall_non_noise"]
    curve_head = "| step | " + " | ".join(tasks) + " | all but noise |"
    curve_rows = "\n".join(
        f"| {step} | " + " | ".join(_pct(c["by_task"].get(t, {}).get("accuracy_first_token"))
                                    for t in tasks)
        + f" | {_pct(c['overall_non_noise']['accuracy_first_token'])} |"
        for step, c in sorted(curve.items()))
    partial = ("" if log["step"] == config["steps"] else
               f"\n- **Intermediate weights**: the snapshot at step {log['step']} of the "
               f"{config['steps']} the schedule plans; the learning rate had not yet decayed.")
    commands = "\n".join(_command(s.config) for s in stages)
    stage_lines = "\n".join(_stage_line(i + 1, s) for i, s in enumerate(stages))
    return f"""# apmae default model

A small **Starcoder2** ({config['layers']} layers × {config['heads']} heads, {config['kv_heads']} KV heads,
hidden {config['hidden_size']}, MLP {config['mlp']}; {config['parameters'] / 1e6:.1f}M parameters, weights in
float16) with its own byte-level BPE tokenizer (vocabulary {config['vocab_size']}, code-aware
pre-tokenization, StarCoder's `<|endoftext|>`, `<fim_prefix>`, `<fim_middle>`, `<fim_suffix>`,
`<fim_pad>`). Trained from scratch on a CPU with a fill-in-the-middle objective, so that apmae has a
real code model to explore on machines that cannot download one. It is a research fixture, not a
useful code assistant.

## Reproduce

```
{commands}
```

- Data: `{data['path']}` ({data['bytes']:,} bytes, SHA-256 `{data['sha256']}`), the train split of
  `apmae.corpus.split_of` (whole directories held out; the held-out files are never trained on).
- {total['step']} steps in all ({total['tokens'] / 1e6:.1f}M tokens); wall time
  {total['seconds'] / 3600:.2f} h of training on 2 CPU cores (bf16 autocast), resumed across
  sessions where needed.{partial}
{stage_lines}
- Objective: PSM fill-in-the-middle prompts built by the same `build_window` as the scenarios
  (the prompt, then the middle and end-of-text; the middle's mean loss weighs its share against
  the prompt's) and plain left-to-right windows. Middles are lexeme-shaped spans (one lexeme, a
  run of 2–10, or a few random characters) and, for the share a stage gives, syntax-aware: a
  scenario task drawn uniformly, then one of its spans in the training file (tree-sitter, as
  the miner finds them; `apmae.lm.train`). AdamW (0.9, 0.95), weight decay
  {config['weight_decay']}.

## Held-out accuracy

{per_task} scenarios per task mined with `apmae mine --split test --per-task {per_task}` from the same
source (held-out files only), greedy completion. *first token* is the paper's criterion; *exact*
requires the whole completion to equal the target and then end.

| task | n | first token | exact |
|---|---|---|---|
{acc_rows}
| **all but noise** | {o['n']} | **{_pct(o['accuracy_first_token'])}** | **{_pct(o['accuracy_exact'])}** |

`noise` is the control: random tokens whose labels are assigned alternately.

## Learning curve (first-token accuracy on the same held-out scenarios)

Steps count from the start of stage 1{f"; stage 2 starts after step {offset}" if offset else ""}.

{curve_head}
|{'---|' * (len(tasks) + 2)}
{curve_rows}

## Loss curve (training loss and its middle part, means over the preceding steps)

| step | tokens (M) | minutes | loss | middle loss |
|---|---|---|---|---|
{loss_rows}
"""


@dataclass
class Stage:
    """One ``apmae lm train`` run of the shipped model's history."""

    dir: Path
    config: dict
    log: dict


def _totals(stages: list[Stage]) -> dict:
    return {k: sum(s.log[k] for s in stages) for k in ("step", "tokens", "seconds")}


def stages_of(train_dir: Path, step: int | None) -> list[Stage]:
    """The training runs behind ``train_dir`` (up to ``step``), first stage first, following
    each run's ``init_from``."""
    config = json.loads((train_dir / "train_config.json").read_text())
    stage = Stage(train_dir, config, training_log(train_dir, step))
    if config.get("init_from"):
        return [*stages_of(Path(config["init_from"]), None), stage]
    return [stage]


def training_log(train_dir: Path, step: int | None) -> dict:
    """The training log up to ``step`` (None: the finished run's)."""
    model_dir = train_dir / ("final" if step is None else f"snapshot-{step:06d}")
    if (model_dir / "train_log.json").exists():
        return json.loads((model_dir / "train_log.json").read_text())
    import torch  # snapshots of older runs kept no log: read the checkpoint's

    state = torch.load(train_dir / "checkpoint.pt", weights_only=False)["state"]
    log = [s for s in state["log"] if s["step"] <= step]
    if not log or log[-1]["step"] != step:
        raise ValueError(f"{train_dir}: the checkpoint's log does not reach step {step}")
    return {"step": step, "tokens": log[-1]["tokens"], "seconds": log[-1]["seconds"], "log": log}


def ship_lm(train_dir: Path, dest: Path, per_task: int = 100, seed: int = 1,
         snapshots: bool = True, step: int | None = None) -> dict:
    """Copy ``train_dir/final`` (or the snapshot of ``step``) into ``dest`` and write its card;
    returns the card's numbers."""
    final_dir = train_dir / ("final" if step is None else f"snapshot-{step:06d}")
    if not (final_dir / "model.safetensors").exists():
        raise ValueError(f"{final_dir}: no trained model (run `apmae lm train` to the end)")
    stages = stages_of(train_dir, step)
    source = Path(stages[-1].config["source"])
    data = data_identity(source)
    scenarios = mine_heldout(final_dir, str(source), train_dir / f"heldout-{per_task}-{seed}.jsonl",
                             per_task, seed)
    final = heldout_accuracy(final_dir, scenarios)
    curve, offset = {}, 0
    for st in stages:
        last = st is stages[-1]
        if snapshots:
            for snap in sorted(st.dir.glob("snapshot-*")):
                at = int(snap.name.split("-")[1])
                if at < st.log["step"] or (not last and at == st.log["step"]):
                    curve[offset + at] = heldout_accuracy(snap, scenarios)
        offset += st.log["step"]
    curve[offset] = final
    dest.mkdir(parents=True, exist_ok=True)
    for name in LM_FILES:
        if (final_dir / name).exists():
            shutil.copy2(final_dir / name, dest / name)
    with atomic_path(dest / "train_config.json") as tmp:
        tmp.write_text(json.dumps([portable(st.config) for st in stages], indent=2))
    (dest / "README.md").write_text(render_lm_card(stages, final, curve, data, per_task))
    (dest / "heldout.json").write_text(json.dumps({"final": final, "curve": curve}, indent=1))
    # the corpus's identity, which `apmae demo` checks its default corpus against
    (dest / "data.json").write_text(json.dumps(data, indent=1))
    return final


# --- the AP-MAE (apmae mae ship) ---------------------------------------------------------------

MAE_FILES = ("config.json", "model.safetensors")
MAE_CARD = "card.json"  # what it was trained on and how; what it measured


def ship_mae(run: Run, dest: Path = DEFAULT_MAE_DIR) -> dict:
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
        for name in MAE_FILES:
            shutil.copy2(src / "model" / name, tmp / name)
        (tmp / MAE_CARD).write_text(json.dumps(card, indent=2))
        (tmp / "README.md").write_text(render_mae_card(card))
    return card


def render_mae_card(card: dict) -> str:
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
    if not (source / MAE_CARD).exists() or model != "default" or not window:
        return None
    card = json.loads((source / MAE_CARD).read_text())
    size = APMAEConfig.from_pretrained(source).image_size
    if card["target_weights"] != weights_digest(DEFAULT_MODEL_DIR) or window % size:
        return None
    return source


def install(run: Run, source: Path) -> Path:
    """Put the shipped AP-MAE in ``run`` as its own (``mae/model``, and its card beside it)."""
    out = run.mae_path
    with atomic_dir(out / "model") as tmp:
        for name in MAE_FILES:
            shutil.copy2(source / name, tmp / name)
    with atomic_path(out / "shipped.json") as tmp:
        tmp.write_text((source / MAE_CARD).read_text())
    return out / "model"
