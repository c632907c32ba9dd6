/* The page of the ablation sweep: accuracy and flips against ablated heads, collapse, and the selective intervention per task. */
import { $, clear, csv, download, el, errorBox, href, params, setParams } from "../dom.js";
import { api } from "../api.js";
import { clusterName, delta, deltaCi, headName, interval, num, pct, plotText } from "../format.js";
import { plot } from "../plots.js";
import { METHODS, interventionView, methodOrder, sizeOrder } from "../intervention.js";
import { start } from "../start.js";

const STRATEGY_COLOURS = { positive: "#d62728", negative: "#2ca02c", neutral: "#1f77b4", causal: "#9467bd", random: "#7f7f7f" };
// strategies often coincide (the same heads first): distinct dashes and symbols keep each visible
const STRATEGY_STYLE = { positive: { dash: "solid", symbol: "circle", width: 3.5 }, negative: { dash: "solid", symbol: "square", width: 2 },
  neutral: { dash: "dash", symbol: "diamond", width: 2 }, causal: { dash: "dashdot", symbol: "triangle-up", width: 2.5 },
  random: { dash: "solid", symbol: "circle", width: 2 } };
const METRICS = { accuracy: { title: "Accuracy against ablated heads", axis: "accuracy (first token)", format: ".0%" },
  loss_change: { title: "Loss change against ablated heads", axis: "change in the target's loss", format: "" } };

async function sweepPage() {
  const metricSel = $("#metric");
  const chosen = params().get("metric");
  metricSel.value = METRICS[chosen] ? chosen : "accuracy";
  const [data, iv] = await Promise.all([api("/api/sweep"), api("/api/interventions").catch((e) => e)]);
  if (iv instanceof Error && iv.status !== 404) {
    clear($("#intervention")).append(errorBox(iv, "Interventions"));
    $("#intervention-tasks").hidden = true;
  } else {
    interventionView($("#intervention"), iv instanceof Error ? null : iv);
    interventionTasks(iv instanceof Error ? null : iv);
  }
  const points = data.points || [];
  if (!points.length) {
    for (const id of ["#acc-plot", "#flip-plot"]) $(id).append(el("p", { class: "hint", text: "No sweep in this run yet (run `apmae sweep`)." }));
    $("#sweep-takeaway").hidden = true;
    return;
  }
  $("#sweep-takeaway").textContent = sweepTakeaway(points, data.collapse || {});
  $("#dl-csv").addEventListener("click", () => download("sweep.csv", csv(points.map((p) => ({ ...p, heads: (p.heads || []).map(([l, h]) => `L${l}H${h}`).join(" ") })),
    ["strategy", "n_heads", "repeat", "accuracy", "incorrect_to_correct", "correct_to_incorrect", "loss_change", "heads"]), "text/csv"));
  $("#dl-json").addEventListener("click", () => download("sweep.json", JSON.stringify(data, null, 2), "application/json"));

  const draw = () => {
    setParams({ metric: metricSel.value === "accuracy" ? null : metricSel.value });
    $("#metric-title").textContent = METRICS[metricSel.value].title;
    sweepChart(points, data.collapse || {}, metricSel.value);
  };
  metricSel.addEventListener("change", draw);
  draw();
  flipChart(points);

  const body = clear($("#collapse tbody"));
  for (const s of Object.keys(STRATEGY_COLOURS)) {
    if (!(s in (data.collapse || {}))) continue;
    const n = data.collapse[s];
    body.append(el("tr", null, el("td", null, el("span", { class: "swatch", style: `background:${STRATEGY_COLOURS[s]}` }), ` ${s}`),
      el("td", { class: "num", text: n == null ? "—" : n })));
  }
  if (!body.children.length) body.append(el("tr", null, el("td", { colspan: 2, class: "hint", text: "No unablated reference point in the sweep." })));
  const none = points.find((p) => p.strategy === "none");
  if (none && none.accuracy === 0) {
    $("#collapse").after(el("p", { class: "hint", text: "The unablated accuracy is 0 on the sweep's scenarios, so every strategy “collapses” at once: these numbers say nothing here." }));
  }
}

/** One line from the sweep's points: which strategy collapses first, and whether any
 * ablation leaves accuracy above the unablated model's (strategy means over repeats). */
function sweepTakeaway(points, collapse) {
  const none = points.find((p) => p.strategy === "none");
  const out = [];
  const order = (s) => { const i = Object.keys(STRATEGY_COLOURS).indexOf(s); return i < 0 ? 99 : i; };
  const collapsing = Object.entries(collapse).filter(([, n]) => n != null).sort((a, b) => a[1] - b[1] || order(a[0]) - order(b[0]));
  const never = Object.entries(collapse).filter(([, n]) => n == null).map(([s]) => s);
  if (none && none.accuracy === 0) {
    out.push("The unablated accuracy is 0 on the sweep's scenarios, so no strategy can collapse.");
  } else if (collapsing.length) {
    const first = collapsing.filter(([, n]) => n === collapsing[0][1]).map(([s]) => s);
    const rest = collapsing.slice(first.length).map(([s, n]) => `${s} at ${n}`);
    out.push(`${first.join(" and ")} collapse${first.length === 1 ? "s" : ""} first (half the unablated accuracy or less at ${collapsing[0][1]} head${collapsing[0][1] === 1 ? "" : "s"})` +
      `${rest.length ? `, then ${rest.join(", ")}` : ""}${never.length ? `; ${never.join(", ")} never within the sweep` : ""}.`);
  } else if (never.length) {
    out.push("No strategy collapses within the sweep.");
  }
  if (none) {
    const stats = byStrategy(points, "accuracy");
    let best = null;
    for (const [s, d] of Object.entries(stats)) {
      d.mean.forEach((v, i) => { if (v > none.accuracy && (!best || v > best.v)) best = { s, n: d.n[i], v }; });
    }
    out.push(best
      ? `Some ablations raise accuracy above the unablated ${pct(none.accuracy)}: the highest, ${best.s} with ${best.n} head${best.n === 1 ? "" : "s"}, reaches ${pct(best.v)}.`
      : `No point rises above the unablated accuracy (${pct(none.accuracy)}).`);
  }
  return out.length ? `Takeaway: ${out.join(" ")}` : "";
}

const HEAD_REF = /^L(\d+)H(\d+)(?:@(-?\d+))?$/;

/** Per task (select one, or all), every method's chosen heads as links and their held-out change. */
function interventionTasks(iv) {
  const section = $("#intervention-tasks");
  const byTask = (iv && iv.by_task) || {};
  const tasks = Object.keys(byTask).sort();
  if (!tasks.length) { section.hidden = true; return; }
  const taskSel = $("#iv-task"), methodSel = $("#iv-method");
  const methods = methodOrder([...new Set(tasks.flatMap((t) => Object.keys(byTask[t])))]);
  for (const t of tasks) taskSel.append(el("option", { value: t, text: t }));
  for (const m of methods) methodSel.append(el("option", { value: m, text: m }));
  const p = params();
  taskSel.value = tasks.includes(p.get("task")) ? p.get("task") : "";
  methodSel.value = methods.includes(p.get("method")) ? p.get("method") : "";

  // a conditional pair's cluster: the head's page until its clusters are known, then the cluster's
  const clusterIds = new Map();
  const clusterLink = (l, h, label) => {
    const a = el("a", { href: href("/head", { layer: l, head: h }), title: `cluster ${clusterName(label)} of ${headName(l, h)}`, text: clusterName(label) });
    const k = `${l}.${h}`;
    if (!clusterIds.has(k)) clusterIds.set(k, api(`/api/heads/${l}/${h}`).then((info) => info.clusters).catch(() => []));
    clusterIds.get(k).then((clusters) => {
      const c = clusters.find((x) => x.label === label);
      if (c) a.href = href("/cluster", { id: c.id });
    });
    return a;
  };
  const headLinks = (heads) => (heads || []).map((ref, i) => {
    const m = String(ref).match(HEAD_REF);
    if (!m) return [i ? ", " : "", el("span", { class: "mono", text: ref })];
    const l = Number(m[1]), h = Number(m[2]);
    const head = el("a", { href: href("/head", { layer: l, head: h }), text: headName(l, h) });
    return [i ? ", " : "", m[3] == null ? head : el("span", { class: "pair" }, head, " @ ", clusterLink(l, h, Number(m[3])))];
  });

  const draw = () => {
    setParams({ task: taskSel.value, method: methodSel.value });
    const body = clear($("#iv-tasks tbody"));
    for (const t of taskSel.value ? [taskSel.value] : tasks) {
      let first = true;
      for (const method of methodOrder(Object.keys(byTask[t]))) {
        if (methodSel.value && method !== methodSel.value) continue;
        for (const size of sizeOrder(byTask[t][method])) {
          const r = byTask[t][method][size];
          body.append(el("tr", { class: first ? "group" : null },
            el("td", { text: first ? t : "" }),
            el("td", { title: METHODS[method] || null, text: method }),
            el("td", { class: "num", text: size }),
            el("td", { class: "heads" }, r.heads && r.heads.length ? headLinks(r.heads) : el("span", { class: "muted", text: "none chosen" })),
            el("td", { class: "num", text: deltaCi(r.accuracy_change, r.accuracy_change_ci) }),
            el("td", { class: "num", text: num(r.logprob_change, 3) }),
            el("td", { class: "num", title: r.net_flips != null ? `net ${r.net_flips}` : null,
              text: r.incorrect_to_correct == null ? "—" : `${r.incorrect_to_correct} / ${r.correct_to_incorrect}` }),
            el("td", { class: "num", text: `${delta(r.random_mean)}${interval(r.random_range, delta)}` }),
            el("td", { class: "num", text: pct(r.share_of_random_beaten, 0) }),
            el("td", { class: "num", text: pct(r.base_accuracy, 0) }),
            el("td", { class: "num", text: r.n ?? "—" })));
          first = false;
        }
      }
    }
    if (!body.children.length) body.append(el("tr", null, el("td", { colspan: 11, class: "hint", text: "No result for this choice." })));
  };
  taskSel.addEventListener("change", draw);
  methodSel.addEventListener("change", draw);
  draw();
}

/** A log x axis ticked at the sweep's head counts (not plotly's 2, 3, … minor labels). */
function logAxis(points) {
  const ns = [...new Set(points.filter((p) => p.n_heads > 0).map((p) => p.n_heads))].sort((a, b) => a - b);
  return { type: "log", title: { text: "heads ablated (log scale)" }, tickvals: ns, ticktext: ns.map(String), minor: { showgrid: false } };
}

/** Per strategy: n_heads sorted, with mean/min/max of ``field`` over repeats. */
function byStrategy(points, field) {
  const out = {};
  for (const p of points) {
    if (p.strategy === "none" || p[field] == null) continue;
    ((out[p.strategy] ||= {})[p.n_heads] ||= []).push(p[field]);
  }
  const summary = {};
  for (const [s, byN] of Object.entries(out)) {
    const ns = Object.keys(byN).map(Number).sort((a, b) => a - b);
    summary[s] = {
      n: ns, mean: ns.map((n) => byN[n].reduce((a, b) => a + b, 0) / byN[n].length),
      min: ns.map((n) => Math.min(...byN[n])), max: ns.map((n) => Math.max(...byN[n])), repeats: ns.map((n) => byN[n].length),
    };
  }
  return summary;
}

function sweepChart(points, collapse, metric) {
  const stats = byStrategy(points, metric);
  const none = points.find((p) => p.strategy === "none");
  const traces = [];
  for (const s of Object.keys(STRATEGY_COLOURS)) {
    const d = stats[s];
    if (!d) continue;
    const color = STRATEGY_COLOURS[s];
    if (d.repeats.some((r) => r > 1)) {
      traces.push({ type: "scatter", mode: "lines", x: d.n, y: d.max, line: { width: 0 }, hoverinfo: "skip", showlegend: false, legendgroup: s });
      traces.push({ type: "scatter", mode: "lines", x: d.n, y: d.min, line: { width: 0 }, fill: "tonexty", fillcolor: "rgba(127,127,127,0.18)",
        hoverinfo: "skip", showlegend: false, legendgroup: s });
      const reps = points.filter((p) => p.strategy === s);
      traces.push({ type: "scatter", mode: "markers", x: reps.map((p) => p.n_heads), y: reps.map((p) => p[metric]), legendgroup: s, showlegend: false,
        marker: { color, size: 5, opacity: 0.5 }, customdata: reps.map((p) => p.repeat),
        hovertemplate: `${s} repeat %{customdata}: %{y:.3f} with %{x} heads<extra></extra>` });
    }
    const style = STRATEGY_STYLE[s];
    traces.push({ type: "scatter", mode: "lines+markers", name: d.repeats.some((r) => r > 1) ? `${s} (mean, min–max)` : s, x: d.n, y: d.mean,
      line: { color, width: style.width, dash: style.dash }, marker: { color, size: 7, symbol: style.symbol }, legendgroup: s,
      hovertemplate: `${s}: %{y:.3f} with %{x} heads ablated<extra></extra>` });
  }
  const shapes = [], annotations = [];
  if (none && none[metric] != null) {
    shapes.push({ type: "line", xref: "paper", x0: 0, x1: 1, y0: none[metric], y1: none[metric], line: { dash: "dash", color: "#333", width: 1 } });
    annotations.push({ xref: "paper", x: 1, y: none[metric], xanchor: "right", yanchor: "bottom", showarrow: false, text: "no ablation", font: { size: 11 } });
    if (metric === "accuracy") {
      shapes.push({ type: "line", xref: "paper", x0: 0, x1: 1, y0: none.accuracy / 2, y1: none.accuracy / 2, line: { dash: "dot", color: "#999", width: 1 } });
      annotations.push({ xref: "paper", x: 0, y: none.accuracy / 2, xanchor: "left", yanchor: "bottom", showarrow: false, text: "collapse threshold (half)", font: { size: 10, color: "#777" } });
    }
  }
  if (metric === "accuracy") {
    for (const [s, n] of Object.entries(collapse)) {
      if (n == null) continue;
      const d = stats[s];
      const i = d ? d.n.indexOf(n) : -1;
      traces.push({ type: "scatter", mode: "markers", x: [n], y: [i >= 0 ? d.mean[i] : 0], showlegend: false, legendgroup: s,
        marker: { symbol: "x-thin-open", size: 18, color: STRATEGY_COLOURS[s] || "#000", line: { width: 3, color: STRATEGY_COLOURS[s] || "#000" } },
        hovertemplate: `${plotText(s)} collapses at %{x} heads<extra></extra>` });
    }
  }
  plot($("#acc-plot"), traces, {
    xaxis: logAxis(points),
    yaxis: { title: { text: METRICS[metric].axis }, tickformat: METRICS[metric].format, rangemode: metric === "accuracy" ? "tozero" : "normal" },
    shapes, annotations, legend: { orientation: "h", x: 0, y: 1.14 }, margin: { l: 60, r: 16, t: 16, b: 48 },
  }, `sweep-${metric}`);
}

function flipChart(points) {
  const lost = byStrategy(points, "correct_to_incorrect"), gained = byStrategy(points, "incorrect_to_correct");
  const traces = [];
  for (const s of Object.keys(STRATEGY_COLOURS)) {
    if (!lost[s]) continue;
    const color = STRATEGY_COLOURS[s];
    const style = STRATEGY_STYLE[s];
    traces.push({ type: "scatter", mode: "lines+markers", name: s, x: lost[s].n, y: lost[s].mean, legendgroup: s,
      line: { color, width: style.width, dash: style.dash }, marker: { color, size: 6, symbol: style.symbol },
      hovertemplate: `${s}: %{y:.1f} right → wrong with %{x} heads<extra></extra>` });
    traces.push({ type: "scatter", mode: "lines+markers", name: `${s}: incorrect → correct`, x: gained[s].n, y: gained[s].mean, legendgroup: s,
      showlegend: false, line: { color, width: 1.2, dash: "dot" }, marker: { color, size: 6, symbol: `${style.symbol}-open` },
      hovertemplate: `${s}: %{y:.1f} wrong → right with %{x} heads<extra></extra>` });
  }
  plot($("#flip-plot"), traces, {
    xaxis: logAxis(points),
    yaxis: { title: { text: "flipped completions" }, rangemode: "tozero" },
    legend: { orientation: "h", x: 0, y: 1.14 }, margin: { l: 60, r: 16, t: 16, b: 48 },
  }, "sweep-flips");
}

start(sweepPage);
