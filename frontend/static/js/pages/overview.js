/* The page of the overview: the head grid, the held-out predictor, the selective intervention, per-task charts and the run's facts. */
import { $, append, clear, csv, download, el, errorBox, href, params, setParams, status } from "../dom.js";
import { api } from "../api.js";
import { deltaCi, headName, interval, num, pct, plotText, signedCi, versus, wilson, withCi } from "../format.js";
import { plot } from "../plots.js";
import { facts } from "../views.js";
import { interventionView } from "../intervention.js";
import { start } from "../start.js";

const GRID_COLOURS = {
  n_clusters: { title: "clusters", colorscale: [[0, "#eef4fb"], [1, "#08306b"]], text: "%{z}" },
  noise_share: { title: "noise share", colorscale: [[0, "#f5f5f5"], [1, "#252525"]], text: "%{z:.0%}" },
  importance: { title: "SHAP (log-odds)", colorscale: [[0, "#b2182b"], [0.5, "#f7f7f7"], [1, "#2166ac"]], text: "%{z:.3f}", diverging: true },
  // accuracy changes drawn in points (×100), so that the cells read as the tables do
  causal_accuracy: { title: "Δ accuracy (points)", colorscale: [[0, "#b2182b"], [0.5, "#f7f7f7"], [1, "#1a9850"]], text: "%{z:+.1f}",
    diverging: true, scale: 100 },
};

async function overview() {
  const select = $("#grid-colour");
  const chosen = params().get("colour");
  select.value = GRID_COLOURS[chosen] ? chosen : "n_clusters";

  const run = await api("/api/run");
  const report = run.report || {};
  const overall = report.scenarios && report.scenarios.overall_non_noise;
  $("#ov-sub").textContent = [
    run.layers != null ? `${run.layers} layers × ${run.heads} heads` : null,
    run.window ? `${run.window}-token windows` : null,
    overall ? `${overall.n} scenarios` : null,
  ].filter(Boolean).join(" · ");
  if (run.problem) status(`The run is not ready: ${run.problem}`);

  runFacts(run);
  heldoutTable(report.predictor && report.predictor.heldout, report.predictor);
  interventionView($("#intervention"), report.intervention);
  accuracyChart(report);
  predictorChart(report);
  reconstructionChart(report);
  modelCard(run);

  let heads = [];
  // asked for only where the run has clusters (the route answers 404 for a run with no atlas)
  if (report.clusters) {
    try { heads = await api("/api/heads"); } catch (e) { clear($("#grid-plot")).append(errorBox(e, "Heads")); return; }
  }
  if (!heads.length) { clear($("#grid-plot")).append(el("p", { class: "hint", text: "No clustered heads in this run yet (run `apmae cluster`)." })); return; }
  const draw = () => { setParams({ colour: select.value === "n_clusters" ? null : select.value }); headHeatmap(heads, run, select.value); };
  select.addEventListener("change", draw);
  draw();
  $("#grid-takeaway").textContent = headsTakeaway(heads);
  topHeads(heads);
  const columns = ["layer", "head", "n_clusters", "noise_share", "importance", "causal_accuracy", "causal_accuracy_ci", "suggested_ablation"];
  $("#heads-csv").addEventListener("click", () => download("heads.csv", csv(heads, columns), "text/csv"));
  $("#heads-json").addEventListener("click", () => download("heads.json", JSON.stringify(heads, null, 2), "application/json"));
}

/** The corpus's size and hash, and whether it is the one the model card names. */
function corpusFact(c) {
  if (!c || !c.sha256) return null;
  const which = c.model_card_sha256 == null ? "no model card to compare with"
    : c.matches_model_card ? "the corpus the model was trained on (its card's hash)"
    : "NOT the corpus the model was trained on: its held-out split may hold code the model saw";
  return `${Number(c.bytes).toLocaleString("en")} bytes, SHA-256 ${c.sha256.slice(0, 12)}… — ${which}`;
}

function runFacts(run) {
  const r = run.report || {};
  const meta = r.meta || {};
  const clusters = r.clusters || {};
  const overall = r.scenarios && r.scenarios.overall_non_noise;
  facts($("#run-facts"), [
    ["model", meta.model || null],
    ["heads", run.layers != null ? `${run.layers} layers × ${run.heads} heads` : null],
    ["window", run.window ? `${run.window} tokens` : null],
    ["scenarios", overall ? `${overall.n} (besides noise); first-token accuracy ${pct(overall.accuracy_first_token)}, exact ${pct(overall.accuracy_exact)}` : null],
    ["mined from", meta.mining ? `${meta.mining.source} (seed ${meta.mining.seed})` : null],
    ["corpus", corpusFact(meta.corpus)],
    ["clusters", clusters.heads ? `${num(clusters.clusters_per_head_mean, 2)} per head on average; ${pct(clusters.clustered_share)} of patterns clustered` : null],
    ["patterns kept", r.patterns ? `${r.patterns.stored} scenarios` : null],
    ["missing", run.missing && run.missing.length ? run.missing.join(", ") : null],
  ]);
}

function headHeatmap(heads, run, key) {
  const layers = run.layers ?? Math.max(...heads.map((h) => h.layer)) + 1;
  const nheads = run.heads ?? Math.max(...heads.map((h) => h.head)) + 1;
  const spec = GRID_COLOURS[key];
  const value = (h) => (h[key] == null ? null : h[key] * (spec.scale || 1));
  const z = Array.from({ length: layers }, () => Array(nheads).fill(null));
  const text = Array.from({ length: layers }, () => Array(nheads).fill(""));
  for (const h of heads) {
    z[h.layer][h.head] = value(h);
    text[h.layer][h.head] = `${headName(h.layer, h.head)}<br>clusters ${h.n_clusters}<br>noise ${pct(h.noise_share)}` +
      `<br>SHAP ${num(h.importance, 4)}<br>causal ${deltaCi(h.causal_accuracy, h.causal_accuracy_ci)} points` +
      (h.suggested_ablation ? "<br>suggested for ablation" : "");
  }
  const trace = {
    type: "heatmap", z, text, x: [...Array(nheads).keys()], y: [...Array(layers).keys()],
    colorscale: spec.colorscale, xgap: 1, ygap: 1,
    texttemplate: layers * nheads <= 64 ? spec.text : "", textfont: { size: 11 },
    hovertemplate: "%{text}<extra></extra>", colorbar: { title: { text: spec.title }, thickness: 12 },
  };
  if (spec.diverging) {
    const m = Math.max(1e-9, ...heads.map((h) => Math.abs(value(h) || 0)));
    trace.zmin = -m; trace.zmax = m;
  } else if (key === "noise_share") {
    trace.zmin = 0; trace.zmax = Math.max(1e-9, ...heads.map((h) => h.noise_share || 0));
  }
  // suggested heads: their cells outlined (hover and click still reach the cell)
  const suggested = heads.filter((h) => h.suggested_ablation);
  const outlines = suggested.map((h) => ({ type: "rect", xref: "x", yref: "y", x0: h.head - 0.44, x1: h.head + 0.44,
    y0: h.layer - 0.44, y1: h.layer + 0.44, line: { color: "#111", width: 2.5 }, fillcolor: "rgba(0,0,0,0)" }));
  const div = $("#grid-plot");
  div.style.height = `${Math.min(720, Math.max(220, 40 + layers * 26))}px`;
  plot(div, [trace], {
    shapes: outlines,
    margin: { l: 48, r: 8, t: 8, b: 40 },
    xaxis: { title: { text: "head" }, dtick: nheads > 16 ? 2 : 1, showgrid: false, zeroline: false, range: [-0.5, nheads - 0.5] },
    yaxis: { title: { text: "layer" }, autorange: "reversed", dtick: layers > 16 ? 2 : 1, showgrid: false, zeroline: false },
  }, `heads-${key}`).then(() => {
    div.removeAllListeners && div.removeAllListeners("plotly_click");
    div.on("plotly_click", (ev) => {
      const p = ev.points && ev.points[0];
      if (p) location.href = href("/head", { layer: p.y, head: p.x });
    });
  });
  const legend = clear($("#grid-legend"));
  if (!heads.some((h) => h.causal_accuracy != null)) {
    legend.append("No causal effects in this run yet (run `apmae sweep`), so no head is suggested for ablation.");
  } else if (suggested.length) {
    legend.append(el("span", { class: "outline", "aria-hidden": "true" }),
      ` outlined: suggested for ablation (${suggested.length} head${suggested.length === 1 ? "" : "s"}) — ablating the head alone raised train-split accuracy, its 95% interval above zero.`);
  } else {
    legend.append("No head is suggested for ablation: no single ablation raised train-split accuracy with its 95% interval above zero.");
  }
}

/** What the grid shows, from the heads: how many clusters and how much noise, which head's
 * pattern marks failures most, and how many single ablations move accuracy either way. */
function headsTakeaway(heads) {
  const range = (f, fmt) => {
    const v = heads.map(f).filter((x) => x != null);
    return v.length ? `${fmt(Math.min(...v))}–${fmt(Math.max(...v))}` : "—";
  };
  const out = [`${heads.length} heads: ${range((h) => h.n_clusters, String)} clusters each, ${range((h) => h.noise_share, (x) => pct(x, 0))} of their patterns noise.`];
  const shap = heads.filter((h) => h.importance != null).sort((a, b) => a.importance - b.importance);
  if (shap.length && shap[0].importance < 0) out.push(`The pattern that marks failures most: ${headName(shap[0].layer, shap[0].head)} (SHAP ${num(shap[0].importance, 4)}).`);
  const causal = heads.filter((h) => h.causal_accuracy_ci);
  if (causal.length) {
    const up = causal.filter((h) => h.causal_accuracy_ci[0] > 0).length, down = causal.filter((h) => h.causal_accuracy_ci[1] < 0);
    const worst = down.sort((a, b) => a.causal_accuracy - b.causal_accuracy)[0];
    out.push(`Ablated alone, ${up} of ${causal.length} heads raise train-split accuracy and ${down.length} lower it, each with its 95% interval clear of zero` +
      `${worst ? ` (most needed: ${headName(worst.layer, worst.head)}, ${deltaCi(worst.causal_accuracy, worst.causal_accuracy_ci)} points)` : ""}; the rest's intervals include zero.`);
  }
  return out.join(" ");
}

function topHeads(heads) {
  const body = clear($("#top-heads tbody"));
  const ranked = heads.filter((h) => h.importance != null).sort((a, b) => a.importance - b.importance).slice(0, 10);
  if (!heads.some((h) => h.importance < 0)) {
    $("#top-heads").before(el("p", { class: "hint", text: heads.some((h) => h.importance != null)
      ? "No head has a negative SHAP in this run: no head's pattern marks failures."
      : "No SHAP values in this run yet (run `apmae predictor train`)." }));
  }
  for (const h of ranked) {
    body.append(el("tr", null,
      el("td", null, el("a", { href: href("/head", { layer: h.layer, head: h.head }), text: headName(h.layer, h.head) }),
        h.suggested_ablation ? el("span", { class: "badge star", title: "suggested for ablation", text: "★" }) : null),
      el("td", { class: "num", text: num(h.importance, 4) }),
      el("td", { class: "num", text: deltaCi(h.causal_accuracy, h.causal_accuracy_ci) }),
      el("td", { class: "num", text: h.n_clusters }),
      el("td", { class: "num", text: pct(h.noise_share) })));
  }
}

// ---------------------------------------------------------------- held-out prediction

const KIND_FROM = { task_prior: "task alone", lm_confidence: "model output" };
const KIND_NOTES = {
  task_prior: "the task's base rate on the train split",
  lm_confidence: "the model's own output (top-1 probability, entropy): no attention",
  pattern_stats: "hand-made statistics of each head's pattern, without AP-MAE",
  row_stats: "statistics of each head's predicting row, without AP-MAE",
  clusters: "each head's AP-MAE cluster",
  embeddings: "each head's AP-MAE embedding",
  "rows+clusters": "row statistics and AP-MAE clusters",
  "rows+embeddings": "row statistics and AP-MAE embeddings",
};

/** Every kind of the held-out comparison, baselines first: [{name, from, ...metrics}]. */
function heldoutKinds(ho) {
  const out = [];
  for (const group of ["baselines", "variants"]) {
    for (const [name, k] of Object.entries(ho[group] || {})) {
      if (!k || typeof k !== "object") continue;
      out.push({ ...k, name, from: k.attention ? "attention" : KIND_FROM[name] || "other" });
    }
  }
  // the live kind's own numbers, when it is not among the listed ones
  if (ho.predictor && !out.some((k) => k.name === ho.predictor)) out.push({ ...ho, name: ho.predictor, from: "attention", attention: true, selected: true });
  return out;
}

const RELATION = { above: "above", below: "below", level: "level with (intervals overlap)" };

/** The sentences that say which predictor wins, computed from the numbers. */
function heldoutVerdict(ho, kinds) {
  const out = [];
  const live = kinds.find((k) => k.selected) || kinds.find((k) => k.name === ho.predictor);
  const lm = kinds.find((k) => k.name === "lm_confidence");
  const pair = (a, b, m) => `${withCi(a[m], a[`${m}_ci`])} vs ${withCi(b[m], b[`${m}_ci`])}`;
  /** "above the model's own confidence in AUC (0.71 [..] vs 0.62 [..])" and the like. With
   * ``diff``, the paired difference a − b on the same resamples (runs built since it is stored),
   * the relation follows its interval, which is what "above" needs; else the two intervals. */
  const compare = (a, b, m, what, them, diff) => {
    if (diff && diff[m] != null) {
      const d = versus(diff[m], diff[`${m}_ci`], 0, null);
      return `${RELATION[d].replace(" (intervals overlap)", "")} ${them} in ${what} (${pair(a, b, m)}; paired difference ${signedCi(diff[m], diff[`${m}_ci`])})`;
    }
    const r = versus(a[m], a[`${m}_ci`], b[m], b[`${m}_ci`]);
    if (!r) return `not measurable in ${what} here (too few of both classes${m === "within_task_auc" ? " within tasks" : ""})`;
    return `${RELATION[r].replace(" (intervals overlap)", "")} ${them} in ${what} (${r === "level" ? "intervals overlap: " : ""}${pair(a, b, m)})`;
  };
  if (live && live.attention && lm) {
    const diff = live.minus_lm_confidence || (live.name === ho.predictor ? ho.minus_lm_confidence : null);
    out.push(`The live attention-only predictor (${live.name}) is ${compare(live, lm, "auc", "AUC", "the model's own confidence (lm_confidence)", diff)}, ` +
      `and ${compare(live, lm, "within_task_auc", "within-task AUC", "it", diff)}.`);
  } else if (live && lm) {
    out.push(`The live predictor (${live.name}) does not read attention alone; the model's own confidence has ` +
      `AUC ${withCi(lm.auc, lm.auc_ci)}, within-task AUC ${withCi(lm.within_task_auc, lm.within_task_auc_ci)}.`);
  } else if (live) {
    out.push(`The live predictor (${live.name}): AUC ${withCi(live.auc, live.auc_ci)}, within-task AUC ${withCi(live.within_task_auc, live.within_task_auc_ci)}; ` +
      "the model's own confidence was not scored in this run, so there is nothing to compare it with.");
  }
  const rows = kinds.find((k) => k.name === "row_stats");
  const mae = kinds.filter((k) => /clusters|embeddings/.test(k.name));
  if (rows && mae.length) {
    // within tasks where it can be measured (the pooled AUC also rewards knowing the task)
    const m = rows.within_task_auc != null && mae.some((k) => k.within_task_auc != null) ? "within_task_auc" : "auc";
    const what = m === "auc" ? "AUC" : "within-task AUC";
    const base = `row_stats ${withCi(rows[m], rows[`${m}_ci`])}`;
    const rel = mae.map((k) => versus(k[m], k[`${m}_ci`], rows[m], rows[`${m}_ci`]));
    if (rel.every((r) => r === "level")) {
      out.push(`AP-MAE adds nothing measurable over row statistics in ${what}: every AP-MAE kind's interval overlaps (${base}; ` +
        `${mae.map((k) => `${k.name} ${withCi(k[m], k[`${m}_ci`])}`).join("; ")}).`);
    } else {
      const parts = mae.map((k, i) => `${k.name} ${rel[i] === "above" ? `+${num(k[m] - rows[m], 2)}` : rel[i] === "below" ? `${num(k[m] - rows[m], 2)} (worse)`
        : rel[i] ? "nothing measurable" : "not measurable"} (${withCi(k[m], k[`${m}_ci`])})`);
      out.push(`What AP-MAE adds over row statistics (${base}) in ${what}: ${parts.join("; ")}.`);
    }
  }
  return out.join(" ");
}

function heldoutTable(ho, predictor) {
  const verdict = $("#heldout-verdict"), body = clear($("#heldout-table tbody")), note = $("#heldout-note");
  if (!ho || ho.skipped) {
    verdict.replaceWith(el("p", { class: "hint", id: "heldout-verdict", text: ho ? `Skipped: ${ho.skipped}` : predictor
      ? "No held-out evaluation in this run (retrain the predictor: `apmae predictor train`)." : "No predictor trained yet (run `apmae predictor train`)." }));
    $("#heldout-table").closest(".table-wrap").hidden = true;
    return;
  }
  const kinds = heldoutKinds(ho);
  verdict.textContent = heldoutVerdict(ho, kinds);
  for (const k of kinds) {
    const above = k.tasks_above_chance || [];
    body.append(el("tr", { class: k.selected ? "live" : null },
      el("td", { title: KIND_NOTES[k.name] || null }, el("span", { class: "mono", text: k.name }), k.selected ? el("b", { text: " (live)" }) : null),
      el("td", { text: k.from }),
      el("td", { class: "num", text: withCi(k.auc, k.auc_ci) }),
      el("td", { class: "num", text: withCi(k.within_task_auc, k.within_task_auc_ci) }),
      el("td", { class: "num", text: num(k.balanced_accuracy, 2) }),
      el("td", { class: "num", text: num(k.brier, 3) }),
      el("td", { class: "num", title: above.length ? above.join(", ") : null, text: above.length }),
    ));
  }
  note.append(`Trained on the train split (${ho.n_train ?? "?"} scenarios), scored once on ${ho.n_test ?? "?"} held-out scenarios; 95% bootstrap intervals. `,
    "Within-task AUC: the AUC inside each task, averaged, so that knowing the task's base rate earns nothing. ",
    "Brier: mean squared error of the probability (lower is better). ",
    ho.selection_rule ? `The live kind: ${ho.selection_rule}.` : "");
}

function accuracyChart(report) {
  const byTask = (report.scenarios && report.scenarios.by_task) || {};
  const tasks = Object.keys(byTask);
  const div = $("#acc-plot");
  if (!tasks.length) { div.append(el("p", { class: "hint", text: "No results yet." })); return; }
  const labels = tasks.map((t) => plotText(t === "noise" ? "noise (control)" : t));
  const n = tasks.map((t) => byTask[t].n);
  const bar = (name, field, color) => ({
    type: "bar", orientation: "h", name, y: labels, x: tasks.map((t) => byTask[t][field]), customdata: n, marker: { color },
    hovertemplate: `%{y}<br>${name}: %{x:.1%} (n = %{customdata})<extra></extra>`,
  });
  div.style.height = `${Math.max(300, 90 + tasks.length * 30)}px`;
  $("#acc-takeaway").textContent = accuracyTakeaway(report.scenarios);
  plot(div, [bar("first token", "accuracy_first_token", "#4c78a8"), bar("exact", "accuracy_exact", "#9ecae9")], {
    barmode: "group", bargap: 0.25, margin: { l: 150, r: 16, t: 8, b: 44 },
    xaxis: { tickformat: ".0%", range: [0, 1], title: { text: "accuracy" } }, yaxis: { autorange: "reversed", automargin: true },
    legend: { orientation: "h", x: 0, y: 1.08, traceorder: "normal" },
  }, "accuracy-per-task");
}

/** First-token accuracy overall and at both ends of the tasks, with Wilson 95% intervals, and
 * the noise control's. */
function accuracyTakeaway(sc) {
  const acc = (r) => `${pct(r.accuracy_first_token)}${interval(wilson(r.accuracy_first_token, r.n), (x) => pct(x))} of ${r.n}`;
  const tasks = Object.entries(sc.by_task).filter(([t, r]) => t !== "noise" && r.n && r.accuracy_first_token != null)
    .sort((a, b) => b[1].accuracy_first_token - a[1].accuracy_first_token);
  const out = [];
  if (sc.overall_non_noise && sc.overall_non_noise.n) out.push(`First-token accuracy over all tasks but noise: ${acc(sc.overall_non_noise)}.`);
  if (tasks.length > 1) {
    const [best, worst] = [tasks[0], tasks[tasks.length - 1]];
    out.push(`Easiest task ${best[0]} (${acc(best[1])}), hardest ${worst[0]} (${acc(worst[1])}).`);
  }
  const noise = sc.by_task.noise;
  if (noise && noise.n) out.push(`The noise control (random spans): ${acc(noise)}.`);
  return out.join(" ");
}

/** Per task, whether the cluster predictor beats chance and the hand-made baseline (point
 * estimates out of fold; the held-out table carries the intervals). */
function predictorTakeaway(byTask, scored) {
  const tasks = scored.filter((t) => t !== "all");
  const count = (f) => tasks.filter((t) => f(byTask[t])).length;
  const all = byTask.all;
  const pooled = all ? `Over all tasks: clusters ${num(all.balanced_accuracy, 2)}, embeddings ${num(all.embeddings_balanced_accuracy, 2)}, baseline ${num(all.baseline_balanced_accuracy, 2)} balanced accuracy. ` : "";
  return `${pooled}Per task, the clusters score above chance (0.5) in ${count((r) => r.balanced_accuracy > 0.5)} of ${tasks.length} tasks and above the hand-made baseline in ` +
    `${count((r) => r.balanced_accuracy > r.baseline_balanced_accuracy)}; the embeddings above the baseline in ${count((r) => r.embeddings_balanced_accuracy > r.baseline_balanced_accuracy)}. ` +
    "Point estimates out of fold: the held-out table above gives intervals.";
}

function predictorChart(report) {
  const byTask = (report.predictor && report.predictor.by_task) || {};
  const div = $("#pred-plot");
  const scored = Object.keys(byTask).filter((t) => !byTask[t].skipped);
  const skipped = Object.keys(byTask).filter((t) => byTask[t].skipped);
  if (!scored.length) {
    div.append(el("p", { class: "hint", text: report.predictor ? "No task had enough of both classes." : "No predictor trained yet (run `apmae predictor train`)." }));
  } else {
    const labels = scored.map((t) => plotText(t === "all" ? "all tasks" : t));
    const bar = (name, field, color) => ({
      type: "bar", orientation: "h", name, y: labels, x: scored.map((t) => byTask[t][field]), marker: { color },
      customdata: scored.map((t) => byTask[t].n_test), hovertemplate: `%{y}<br>${name}: %{x:.3f} (n = %{customdata})<extra></extra>`,
    });
    div.style.height = `${Math.max(300, 90 + scored.length * 40)}px`;
    $("#pred-takeaway").textContent = predictorTakeaway(byTask, scored);
    plot(div, [bar("clusters", "balanced_accuracy", "#4c78a8"), bar("embeddings", "embeddings_balanced_accuracy", "#f58518"),
      bar("baseline", "baseline_balanced_accuracy", "#bab0ac"),
      { type: "scatter", mode: "lines", name: "chance", x: [null], y: [null], line: { dash: "dash", color: "#d62728", width: 1 }, hoverinfo: "skip" }], {
      barmode: "group", bargap: 0.2, margin: { l: 150, r: 16, t: 8, b: 44 },
      xaxis: { range: [0, 1], title: { text: "balanced accuracy" } }, yaxis: { autorange: "reversed", automargin: true },
      legend: { orientation: "h", x: 0, y: 1.08, traceorder: "normal" },
      shapes: [{ type: "line", yref: "paper", y0: 0, y1: 1, x0: 0.5, x1: 0.5, line: { dash: "dash", color: "#d62728", width: 1 } }],
    }, "predictor");
  }
  const note = $("#pred-note");
  note.append("Balanced classes per task, out-of-fold predictions. clusters: one categorical feature per head (its cluster); embeddings: the AP-MAE embeddings; baseline: hand-made pattern statistics without AP-MAE.");
  if (skipped.length) note.append(el("br"), `Skipped (too few of one class): ${skipped.join(", ")}.`);
}

function reconstructionChart(report) {
  const rec = report.reconstruction;
  const div = $("#rec-plot");
  if (!rec) { div.append(el("p", { class: "hint", text: "AP-MAE not evaluated yet (run `apmae mae eval`)." })); return; }
  const layers = Object.keys(rec.by_layer || {}).sort((a, b) => a - b);
  const names = { model: "AP-MAE", head_mean: "head mean", visible_mean: "visible mean", nearest_visible: "nearest visible" };
  const colors = { model: "#4c78a8", head_mean: "#f58518", visible_mean: "#bab0ac", nearest_visible: "#79706e" };
  const series = ["model", ...Object.keys(rec.baselines || {})];
  const x = [...layers.map((l) => `L${l}`), "all"];
  const traces = series.map((s) => ({
    type: "bar", name: plotText(names[s] || s), x, marker: { color: colors[s] || "#999" },
    y: [...layers.map((l) => rec.by_layer[l][s]), s === "model" ? rec.mse : rec.baselines[s]],
    hovertemplate: `%{x}: ${plotText(names[s] || s)} MSE %{y:.4f}<extra></extra>`,
  }));
  plot(div, traces, {
    barmode: "group", margin: { l: 56, r: 8, t: 8, b: 40 },
    yaxis: { title: { text: "masked MSE (lower is better)" }, rangemode: "tozero" },
    legend: { orientation: "h", x: 0, y: 1.12 },
  }, "reconstruction");
  if (rec.best_baseline && rec.ratio_to_best_baseline != null) {
    const ratio = rec.ratio_to_best_baseline;
    $("#rec-takeaway").textContent = `AP-MAE's masked-patch error is ${num(ratio, 2)}× that of the best baseline (${names[rec.best_baseline] || rec.best_baseline}): ` +
      (ratio < 1 ? "it reconstructs what it did not see better than copying the head's usual pattern or the visible patches." : "it does no better than a baseline that needs no model.");
  }
  const note = $("#rec-note");
  note.append(`Masked-patch MSE on ${rec.n_patterns} held-out patterns (${rec.n_scenarios} scenarios), per layer and overall. `);
  note.append("Baselines: the head's mean image, the mean of the visible patches, the nearest visible patch.");
  const gen = report.generalization || rec.generalization;
  if (gen && gen.other_run) {
    note.append(el("br"), `On run ${gen.other_run}'s patterns (${gen.other_model}): MSE ${num(gen.mse_other_model, 4)}, ${pct(gen.degradation)} worse.`);
    if (gen.ratio_to_best_baseline_other_model !== undefined) note.append(` There it is ${num(gen.ratio_to_best_baseline_other_model, 2)}× that model's best baseline.`);
  }
}

/** The default model's card, from its facts (/api/model-card/facts): what it is, the corpus,
 * its training stages, and held-out accuracy at the end and along training. The card's full
 * text (with the reproducing commands and the loss curve) stays one link away. */
async function modelCard(run) {
  if (!run.model_card) return;
  let card;
  try { card = await api("/api/model-card/facts"); } catch (_e) { return; }  // no card: nothing to show
  const a = card.architecture, last = card.stages[card.stages.length - 1];
  const table = (head, rows) => el("table", { class: "data compact" },
    el("thead", null, el("tr", null, head.map((t, i) => el("th", { class: i ? "num" : null, text: t })))),
    el("tbody", null, rows.map((r) => el("tr", null, r.map((c, i) => el("td", { class: i ? "num" : null }, c))))));
  const all = card.heldout.overall_non_noise;
  const lr = (c) => `${c.lr} (${c.warmup} warm-up steps, cosine to ${c.min_lr})`;
  append(clear($("#model-card-body")), [
    el("p", { text: `A ${a.model_type} of ${a.num_hidden_layers} layers × ${a.num_attention_heads} heads (${a.num_key_value_heads} KV heads), ` +
      `hidden ${a.hidden_size}, MLP ${a.intermediate_size}; ${(last.parameters / 1e6).toFixed(1)}M parameters in ${a.dtype}, ` +
      `its own tokenizer of ${a.vocab_size} tokens. Trained from scratch with a fill-in-the-middle objective: a research fixture, not a code assistant.` }),
    el("dl", { class: "facts" },
      el("dt", { text: "corpus" }), el("dd", null, el("code", { text: card.data.path }), ` (${Number(card.data.bytes).toLocaleString("en")} bytes, SHA-256 `,
        el("code", { text: `${card.data.sha256.slice(0, 16)}…` }), "), its train split"),
      el("dt", { text: "held-out accuracy" }), el("dd", { text: `${pct(all.accuracy_first_token)} first token, ${pct(all.accuracy_exact)} exact (${all.n} scenarios, all tasks but noise)` })),
    el("h4", { text: "Training stages" }),
    table(["stage", "steps", "batch × window", "learning rate", "middle share", "plain windows", "task spans", "seed"],
      card.stages.map((c, i) => [`${i + 1}${c.init_from ? " (from the previous)" : ""}`, c.steps, `${c.batch_size} × ${c.window}${c.short_windows ? ` (also ${c.short_windows})` : ""}`,
        lr(c), c.middle_share, pct(c.plain_share, 0), pct(c.task_share || 0, 0), c.seed])),
    el("h4", { text: "Held-out accuracy per task" }),
    table(["task", "n", "first token", "exact"], [...Object.entries(card.heldout.by_task).map(([t, r]) => [t, r.n, pct(r.accuracy_first_token), pct(r.accuracy_exact)]),
      [el("b", { text: "all but noise" }), all.n, el("b", { text: pct(all.accuracy_first_token) }), el("b", { text: pct(all.accuracy_exact) })]]),
    el("h4", { text: "Learning curve (the same held-out scenarios, all tasks but noise)" }),
    table(["step", "first token", "exact"], Object.entries(card.curve).sort((x, y) => Number(x[0]) - Number(y[0]))
      .map(([step, c]) => [step, pct(c.overall_non_noise.accuracy_first_token), pct(c.overall_non_noise.accuracy_exact)])),
    el("p", { class: "hint" }, el("a", { href: run.model_card, text: "The card as text" }), " (Markdown), with the commands that reproduce the model and its loss curve."),
  ]);
  $("#model-card").hidden = false;
}

start(overview);
