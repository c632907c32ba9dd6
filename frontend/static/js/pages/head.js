/* The page of a head: its cluster map (filtered by task and correctness) and a card per cluster. */
import { $, clear, el, errorBox, href, intParam, params, setParams } from "../dom.js";
import { api } from "../api.js";
import { clusterName, deltaCi, headName, num, pct, plotText, shorten, visible } from "../format.js";
import { NOISE, PALETTE, plot } from "../plots.js";
import { correctBar, scenarioThumb, taskLines, thumb } from "../views.js";
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

  const colour = {};
  info.clusters.forEach((c, i) => { colour[c.label] = c.label < 0 ? NOISE : PALETTE[i % PALETTE.length]; });

  const total = info.clusters.reduce((s, c) => s + c.size, 0);
  const cards = $("#cluster-cards");
  for (const c of info.clusters) {
    cards.append(el("a", { class: "card", href: href("/cluster", { id: c.id }) },
      el("div", { class: "card-head" }, el("span", { class: "swatch", style: `background:${colour[c.label]}` }),
        el("b", { text: c.label < 0 ? "noise" : `Cluster ${c.label}` }),
        el("span", { class: "hint", text: `${c.size} (${pct(total ? c.size / total : 0, 0)})` })),
      c.medoid ? thumb(scenarioThumb(c.medoid, layer, head), `medoid of cluster ${c.label}`) : el("div", { class: "nothumb", text: "no medoid" }),
      correctBar(c.by_correct),
      el("div", { class: "tasks", title: Object.entries(c.by_task || {}).map(([t, n]) => `${t}: ${n}`).join("\n") },
        taskLines(c.by_task))));
  }

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
      drawMap(div, map.points, colour, layer, head);
      $("#map-count").textContent = `${map.points.length} scenarios`;
    } catch (e) {
      clear(div).append(errorBox(e, "Map"));
    }
  };
  taskSel.addEventListener("change", load);
  corrSel.addEventListener("change", load);
  await load();
}

/** What a head does for correctness: its SHAP and its causal effect, as text and badges. */
function headEffects(info) {
  const out = [];
  out.push(info.importance == null ? "SHAP: not computed in this run (run `apmae predictor train`). "
    : `SHAP ${num(info.importance, 4)} (its mean contribution to the correctness predictor's log-odds over wrong completions; negative marks failures). `);
  out.push(info.causal_accuracy == null ? "Causal effect: not measured in this run (run `apmae sweep`)."
    : `Causal effect: ablating this head alone changes train-split accuracy by ${deltaCi(info.causal_accuracy, info.causal_accuracy_ci)} points (95% interval).`);
  if (info.suggested_ablation) {
    out.push(" ", el("span", { class: "badge star", title: "its single ablation raised train-split accuracy, interval above zero", text: "★ suggested for ablation" }));
  }
  return out;
}

function drawMap(div, points, colour, layer, head) {
  const byLabel = new Map();
  for (const pt of points) {
    if (!byLabel.has(pt.cluster)) byLabel.set(pt.cluster, []);
    byLabel.get(pt.cluster).push(pt);
  }
  const labels = [...byLabel.keys()].sort((a, b) => a - b);
  const keys = [];
  const type = points.length > 5000 ? "scattergl" : "scatter";
  const traces = labels.map((label) => {
    const pts = byLabel.get(label);
    keys.push(pts.map((q) => q.key));
    return {
      type, mode: "markers", name: `${clusterName(label)} (${pts.length})`,
      x: pts.map((q) => q.x), y: pts.map((q) => q.y),
      marker: { color: colour[label] || NOISE, size: 6, opacity: 0.75, line: { width: 0 } },
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
    margin: { l: 36, r: 8, t: 8, b: 28 }, hovermode: "closest", showlegend: true,
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
