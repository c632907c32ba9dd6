/* The page of a head: its pattern metrics, its cluster map (filtered by task and correctness), a
 * card per cluster (description, metrics, enrichment, how many match the filter) and its nearest heads. */
import { $, clear, el, errorBox, href, intParam, params, setParams } from "../dom.js";
import { api } from "../api.js";
import { clusterName, deltaCi, headName, num, pct, plotText, shorten, visible } from "../format.js";
import { NOISE, categoryStyle, plot } from "../plots.js";
import { enrichmentTable, metricsTable } from "../reading.js";
import { correctBar, scenarioThumb, thumb } from "../views.js";
import { start } from "../start.js";

async function headPage() {
  const p = params();
  const layer = intParam(p, "layer"), head = intParam(p, "head");
  if (layer == null || head == null) throw new Error("no head given: open one from the grid on the overview (the link needs ?layer=&head=)");
  document.title = `${headName(layer, head)} · ${document.title}`;
  $("#head-title").textContent = `Head ${headName(layer, head)}`;
  $("#crumb-head").textContent = headName(layer, head);

  const [run, info] = await Promise.all([api("/api/run"), api(`/api/heads/${layer}/${head}`)]);
  $("#head-summary").append(`Layer ${layer}, head ${head}: ${info.n_clusters} cluster${info.n_clusters === 1 ? "" : "s"}, ${pct(info.noise_share)} noise. `,
    ...headEffects(info));

  const stepper = $("#head-stepper");
  const go = (l, h, text) => (l >= 0 && h >= 0 && (run.layers == null || l < run.layers) && (run.heads == null || h < run.heads)
    ? el("a", { href: href("/head", { layer: l, head: h, task: p.get("task"), correct: p.get("correct") }), text })
    : el("span", { class: "muted", text }));
  stepper.append(go(layer, head - 1, "← head"), go(layer, head + 1, "head →"), go(layer - 1, head, "↑ layer"), go(layer + 1, head, "layer ↓"));

  $("#head-metrics").append(
    el("p", { class: "description", id: "head-description", text: info.description ? `Pattern: ${info.description}.` : "Pattern metrics need the head's kept patterns (`apmae extract --keep`)." }),
    info.metrics ? metricsTable([["this head", info.metrics]], { id: "head-metrics-table" }) : null);

  // no two clusters alike: a colour each, then a symbol once the colours run out (noise: grey)
  const style = {};
  info.clusters.filter((c) => c.label >= 0).forEach((c, i) => { style[c.label] = categoryStyle(i); });
  const noise = { color: NOISE, symbol: "circle-open", glyph: "○" };
  const look = (label) => style[label] || noise;

  const total = info.clusters.reduce((s, c) => s + c.size, 0);
  const cards = $("#cluster-cards");
  const counters = new Map();
  for (const c of info.clusters) {
    const count = el("span", { class: "hint count", text: `${c.size} (${pct(total ? c.size / total : 0, 0)})` });
    const card = el("a", { class: "card", href: href("/cluster", { id: c.id }), dataset: { label: c.label } },
      el("div", { class: "card-head" }, el("span", { class: "glyph", style: `color:${look(c.label).color}`, text: look(c.label).glyph }),
        el("b", { text: c.label < 0 ? "noise" : `Cluster ${c.label}` }), count),
      c.medoid ? thumb(scenarioThumb(c.medoid, layer, head), `medoid of cluster ${c.label}`) : el("div", { class: "nothumb", text: "no medoid" }),
      el("p", { class: "description", text: c.description || (c.label < 0 ? "Patterns near none of the head's clusters." : "") }),
      correctBar(c.by_correct),
      el("div", { class: "card-tables" },
        c.metrics ? metricsTable([["cluster", c.metrics], ["head", info.metrics]]) : null,
        enrichmentTable(c.enrichment, { top: 3 })));
    counters.set(c.label, { card, count, size: c.size });
    cards.append(card);
  }
  /** The cards' counts under the filter: "k of n match" (from the map's per-cluster counts). */
  const recount = (counts, filtered) => {
    const matching = new Map(counts.map((x) => [x.label, x.matching]));
    let sum = 0;
    for (const [label, { card, count, size }] of counters) {
      const k = matching.get(label) ?? 0;
      sum += k;
      count.textContent = filtered ? `${k} of ${size} match` : `${size} (${pct(total ? size / total : 0, 0)})`;
      card.classList.toggle("dim", filtered && !k);
    }
    $("#cards-count").textContent = filtered ? `${sum} of ${total} scenarios match the filter` : `${total} scenarios`;
  };

  const taskSel = $("#f-task"), corrSel = $("#f-correct");
  for (const t of run.tasks || []) taskSel.append(el("option", { value: t, text: t }));
  taskSel.value = (run.tasks || []).includes(p.get("task")) ? p.get("task") : "";
  corrSel.value = ["true", "false"].includes(p.get("correct")) ? p.get("correct") : "";
  const load = async () => {
    setParams({ task: taskSel.value, correct: corrSel.value });
    const q = new URLSearchParams();
    if (taskSel.value) q.set("task", taskSel.value);
    if (corrSel.value) q.set("correct", corrSel.value);
    const div = $("#map-plot");
    try {
      const map = await api(`/api/heads/${layer}/${head}/map${q.toString() ? `?${q}` : ""}`);
      drawMap(div, map.points, look, layer, head);
      $("#map-count").textContent = `${map.points.length} scenarios`;
      recount(map.counts, q.toString() !== "");
    } catch (e) {
      clear(div).append(errorBox(e, "Map"));
    }
  };
  taskSel.addEventListener("change", load);
  corrSel.addEventListener("change", load);
  similarPanel(layer, head, p);
  await load();
}

/** The heads nearest to this one by the distribution of their patterns, measure selectable (?by=),
 * in this run or in another (?in=, e.g. another model's run: its heads are named, not linked,
 * since this explorer serves one run). */
function similarPanel(layer, head, p) {
  const sel = $("#sim-by"), other = $("#sim-run"), list = $("#similar");
  sel.value = ["embedding", "profile"].includes(p.get("by")) ? p.get("by") : "";
  other.value = p.get("in") || "";
  const load = async () => {
    setParams({ by: sel.value, in: other.value.trim() });
    const q = new URLSearchParams({ k: 8 });
    if (sel.value) q.set("by", sel.value);
    if (other.value.trim()) q.set("run", other.value.trim());
    clear(list).append(el("p", { class: "hint loading", text: "Loading…" }));
    try {
      const r = await api(`/api/heads/${layer}/${head}/similar?${q}`);
      if (!sel.value) sel.value = r.by;
      const here = r.other_run === r.run;
      clear(list).append(r.items.length ? el("ol", { class: "similar" }, r.items.map((x) => el("li", null,
        here ? el("a", { href: href("/head", { layer: x.layer, head: x.head }), text: headName(x.layer, x.head) }) : el("b", { text: headName(x.layer, x.head) }),
        el("span", { class: "hint", title: "distance (smaller: nearer)", text: ` ${x.distance.toPrecision(3)}` }))))
        : el("p", { class: "hint", text: "No other head to compare with." }),
      el("p", { class: "hint", id: "similar-note", text: `${here ? "" : `Heads of run ${r.other_run} (${r.other_n} scenarios). `}`
        + `${r.by === "embedding" ? "1 − cosine of the heads' mean AP-MAE embeddings" : "distance between standardised pattern-metric profiles"}, over ${r.n} scenarios of this head.` }));
    } catch (e) {
      clear(list).append(errorBox(e, "Similar heads"));
    }
  };
  sel.addEventListener("change", load);
  other.addEventListener("change", load);
  return load();
}

/** What a head does for correctness: its SHAP and its causal effect, as text and badges. */
function headEffects(info) {
  const out = [];
  out.push(info.importance == null ? "SHAP: not computed in this run (run `apmae predictor train`). "
    : `SHAP ${num(info.importance, 4)} (its mean contribution to the correctness predictor's log-odds over wrong completions; negative marks failures). `);
  out.push(info.causal_accuracy == null ? "Causal effect: not measured for this head (`apmae sweep` ablates every head of a model with no more than its `--candidates`, else the ones the correctness predictor reads most)."
    : `Causal effect: ablating this head alone changes train-split accuracy by ${deltaCi(info.causal_accuracy, info.causal_accuracy_ci)} points (95% interval).`);
  if (info.suggested_ablation) {
    out.push(" ", el("span", { class: "badge star", title: "its single ablation raised train-split accuracy, interval above zero", text: "★ suggested for ablation" }));
  }
  return out;
}

/** The map: a trace per cluster in its own colour and symbol, its label at its centroid. */
function drawMap(div, points, look, layer, head) {
  const byLabel = new Map();
  for (const pt of points) {
    if (!byLabel.has(pt.cluster)) byLabel.set(pt.cluster, []);
    byLabel.get(pt.cluster).push(pt);
  }
  const labels = [...byLabel.keys()].sort((a, b) => a - b);
  const keys = [];
  const type = points.length > 5000 ? "scattergl" : "scatter";
  const mean = (xs) => xs.reduce((s, v) => s + v, 0) / xs.length;
  const annotations = [];
  const traces = labels.map((label) => {
    const pts = byLabel.get(label), { color, symbol } = look(label);
    keys.push(pts.map((q) => q.key));
    if (label >= 0) {
      annotations.push({ x: mean(pts.map((q) => q.x)), y: mean(pts.map((q) => q.y)), text: `<b>${clusterName(label)}</b>`, showarrow: false,
        font: { size: 11, color: "#222" }, bgcolor: "rgba(255,255,255,0.8)", bordercolor: color, borderwidth: 1.5, borderpad: 1 });
    }
    return {
      type, mode: "markers", name: `${clusterName(label)} (${pts.length})`,
      x: pts.map((q) => q.x), y: pts.map((q) => q.y),
      marker: { color, symbol, size: 7, opacity: 0.75, line: { width: symbol.endsWith("open") ? 1 : 0 } },
      customdata: pts.map((q) => [plotText(q.task), q.correct ? "correct" : "incorrect",
        plotText(shorten(visible(q.target), 48)), plotText(shorten(visible(q.completion), 48))]),
      hovertemplate: "%{customdata[0]} · %{customdata[1]}<br>target: %{customdata[2]}<br>completion: %{customdata[3]}" +
        `<extra>${clusterName(label)}</extra>`,
    };
  });
  if (!points.length) {
    clear(div).append(el("p", { class: "hint", text: "No scenario matches these filters." }));
    return;
  }
  clear(div);
  plot(div, traces, {
    margin: { l: 36, r: 8, t: 8, b: 28 }, hovermode: "closest", showlegend: true, annotations,
    xaxis: { zeroline: false, showticklabels: false, title: { text: "" } },
    yaxis: { zeroline: false, showticklabels: false },
    legend: { orientation: "v", x: 1.01, y: 1 },
  }, `map-L${layer}-H${head}`).then(() => {
    div.on("plotly_click", (ev) => {
      const p = ev.points && ev.points[0];
      if (!p) return;
      const key = keys[p.curveNumber] && keys[p.curveNumber][p.pointIndex];
      if (key) location.href = href("/scenario", { key, layer, head });
    });
  });
}

start(headPage);
