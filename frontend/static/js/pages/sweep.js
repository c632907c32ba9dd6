/* The page of the ablation sweep: accuracy and flips against ablated heads (the hover names
 * them), collapse, each head ablated alone, and the selective intervention per task. */
import { $, clear, csv, download, el, errorBox, href, params, setParams } from "../dom.js";
import { api } from "../api.js";
import { clusterName, delta, deltaCi, headName, interval, num, pct, plotText, signedCi } from "../format.js";
import { MONO, plot } from "../plots.js";
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
  const [data, run] = await Promise.all([api("/api/sweep"), api("/api/run")]);
  const report = run.report || {};
  // asked for only where the run has them (the route answers 404 otherwise)
  const iv = report.intervention ? await api("/api/interventions").catch((e) => e) : null;
  if (iv instanceof Error && iv.status !== 404) {
    clear($("#intervention")).append(errorBox(iv, "Interventions"));
    $("#intervention-tasks").hidden = true;
  } else {
    interventionView($("#intervention"), iv instanceof Error ? null : iv);
    interventionTasks(iv instanceof Error ? null : iv);
  }
  await singleHeads(Boolean(report.sweep));
  const points = data.points || [];
  if (!points.length) {
    for (const id of ["#acc-plot", "#flip-plot"]) $(id).append(el("p", { class: "hint", text: "No sweep in this run yet (run `apmae sweep`)." }));
    $("#sweep-takeaway").hidden = true;
    return;
  }
  $("#sweep-takeaway").textContent = sweepTakeaway(points, data.collapse || {});
  $("#dl-csv").addEventListener("click", () => download("sweep.csv", csv(points.map((p) => ({ ...p, heads: (p.heads || []).map(([l, h]) => headName(l, h)).join(" ") })),
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
      d.mean.forEach((v, i) => { if (v > none.accuracy && (!best || v > best.v)) best = { s, n: d.n[i], v, lo: d.min[i], hi: d.max[i], k: d.repeats[i] }; });
    }
    const spread = best && best.k > 1 ? ` (mean of ${best.k} repeats, which range ${pct(best.lo)}–${pct(best.hi)})` : "";
    out.push(best
      ? `Some ablations raise accuracy above the unablated ${pct(none.accuracy)}: the highest, ${best.s} with ${best.n} head${best.n === 1 ? "" : "s"}, reaches ${pct(best.v)}${spread}.`
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
    if (!clusterIds.has(k)) clusterIds.set(k, api(`/api/heads/${l}/${h}?metrics=false`).then((info) => info.clusters).catch(() => []));
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

/** The heads a point ablated, as its hover names them: all of them when few; else, when the
 * strategy's previous point ablated a subset (ranked strategies add heads in order), those
 * plus the added ones; else the first ones in ablation order. */
const HOVER_HEADS = 8;
function headsText(heads, before) {
  const names = (hs) => (hs || []).map(([l, h]) => headName(l, h));
  const list = (ns) => (ns.length > HOVER_HEADS ? `${ns.slice(0, HOVER_HEADS).join(", ")}, … (+${ns.length - HOVER_HEADS} more)` : ns.join(", "));
  const now = names(heads), prev = new Set(names(before));
  if (!now.length) return "no head";
  const current = new Set(now);
  if (now.length > HOVER_HEADS && prev.size && [...prev].every((n) => current.has(n))) {
    return `the ${prev.size} of the previous point, plus ${list(now.filter((n) => !prev.has(n)))}`;
  }
  return list(now);
}

/** ``headsText`` of each point of one strategy and repeat, in order of head count. */
function hoverHeads(points) {
  const out = new Map(), last = new Map();
  for (const p of [...points].sort((a, b) => a.n_heads - b.n_heads)) {
    const k = `${p.strategy}.${p.repeat}`;
    out.set(p, plotText(headsText(p.heads, last.get(k))));
    last.set(k, p.heads);
  }
  return out;
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
  const named = hoverHeads(points);
  // the heads of strategy s at n: one list when every repeat ablated the same heads
  const headsAt = (s, n) => {
    const reps = points.filter((p) => p.strategy === s && p.n_heads === n);
    const texts = [...new Set(reps.map((p) => named.get(p)))];
    return texts.length === 1 ? texts[0] : `${reps.length} random sets (hover a repeat's dot for its heads)`;
  };
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
        marker: { color, size: 5, opacity: 0.5 }, customdata: reps.map((p) => [p.repeat, named.get(p)]),
        hovertemplate: `${s} repeat %{customdata[0]}: %{y:.3f} with %{x} heads<br>ablated: %{customdata[1]}<extra></extra>` });
    }
    const style = STRATEGY_STYLE[s];
    traces.push({ type: "scatter", mode: "lines+markers", name: d.repeats.some((r) => r > 1) ? `${s} (mean, min–max)` : s, x: d.n, y: d.mean,
      line: { color, width: style.width, dash: style.dash }, marker: { color, size: 7, symbol: style.symbol }, legendgroup: s,
      customdata: d.n.map((n) => headsAt(s, n)),
      hovertemplate: `${s}: %{y:.3f} with %{x} heads ablated<br>ablated: %{customdata}<extra></extra>` });
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
        customdata: [headsAt(s, n)], hovertemplate: `${plotText(s)} collapses at %{x} heads<br>ablated: %{customdata}<extra></extra>` });
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

// ---------------------------------------------------------------- each head alone

/** Heads drawn in the single-ablation chart when there are many: the ones whose ablation
 * raises accuracy most and the ones it lowers most (every head: /api/head-effects, and the
 * overview's grid coloured by causal effect). */
const SINGLE_SHOWN = 15;

/** Where an interval lies against zero: 1 above, -1 below, 0 it includes zero. */
const sign = (ci) => (ci && ci[0] > 0 ? 1 : ci && ci[1] < 0 ? -1 : 0);

/** The chart of every head ablated alone (``/api/head-effects``: ``causal_accuracy`` and
 * ``causal_logprob`` with their intervals), per task, and its takeaway. ``swept``: whether the
 * run has a sweep, which measures them (without one nothing is asked for). */
async function singleHeads(swept) {
  const box = $("#single-plot"), takeaway = $("#single-takeaway"), taskSel = $("#single-task");
  if (!swept) {
    takeaway.replaceWith(el("p", { class: "hint", id: "single-takeaway", text: "No single-head ablations in this run yet (run `apmae sweep`)." }));
    taskSel.closest("label").hidden = true;
    return;
  }
  const draw = async (task) => {
    setParams({ single: task === "all" ? null : task });
    let effects;
    try {
      effects = await api(`/api/head-effects?task=${encodeURIComponent(task)}`);
    } catch (e) {
      clear(box).append(errorBox(e, "Single-head effects"));
      takeaway.textContent = "";
      return null;
    }
    const acc = effects.measures.causal_accuracy || [];
    const lp = new Map((effects.measures.causal_logprob || []).map((r) => [headName(r.layer, r.head), r]));
    if (!acc.length) {
      clear(box).append(el("p", { class: "hint", text: "No single-head ablation was measured for this task." }));
      takeaway.textContent = "";
      return effects;
    }
    const rows = acc.map((r) => ({ name: headName(r.layer, r.head), acc: r, lp: lp.get(headName(r.layer, r.head)) }))
      .sort((a, b) => b.acc.value - a.acc.value || (b.lp ? b.lp.value : 0) - (a.lp ? a.lp.value : 0));
    takeaway.textContent = singleTakeaway(rows, task);
    singleChart(box, rows);
    return effects;
  };
  // the pooled effects first: their answer lists the tasks that have effects
  const pooled = await draw("all");
  for (const t of ((pooled && pooled.tasks) || []).filter((t) => t !== "all")) taskSel.append(el("option", { value: t, text: t }));
  const chosen = params().get("single");
  if ([...taskSel.options].some((o) => o.value === chosen && chosen !== "all")) {
    taskSel.value = chosen;
    await draw(chosen);
  }
  taskSel.addEventListener("change", () => draw(taskSel.value));
}

/** Sentences from the single ablations: how many heads raise or lower accuracy and the
 * target's log-probability with their interval clear of zero, and the largest of each. */
function singleTakeaway(rows, task) {
  const scenarios = Math.max(...rows.map((r) => r.acc.n || 0));
  const part = (key, fmt) => {
    const measured = rows.filter((r) => r[key]);
    if (!measured.length) return null;
    const up = measured.filter((r) => sign(r[key].ci) > 0).sort((a, b) => b[key].value - a[key].value);
    const down = measured.filter((r) => sign(r[key].ci) < 0).sort((a, b) => a[key].value - b[key].value);
    const most = (list) => (list.length ? ` (most: ${list[0].name} ${fmt(list[0][key])})` : "");
    const level = measured.length - up.length - down.length;
    return `ablating ${up.length} of ${measured.length} heads raises it with the 95% interval above zero${most(up)}, ${down.length} lower${down.length === 1 ? "s" : ""} it${most(down)}, ` +
      `${level} ${level === 1 ? "has an interval that includes" : "have intervals that include"} zero.`;
  };
  const acc = part("acc", (e) => `${deltaCi(e.value, e.ci)} points`);
  const lp = part("lp", (e) => signedCi(e.value, e.ci));
  return `Takeaway: each head ablated alone on ${task === "all" ? "the" : `the ${task}`} train-split scenarios (up to ${scenarios}; raising means the model does better without the head). ` +
    `First-token accuracy: ${acc}${lp ? ` The target's log-probability: ${lp}` : ""}`;
}

/** Accuracy change (points) and log-probability change side by side, one row per head with its
 * 95% interval; with many heads only those at both ends. */
function singleChart(box, rows) {
  const shown = rows.length > 2 * SINGLE_SHOWN ? [...rows.slice(0, SINGLE_SHOWN), ...rows.slice(-SINGLE_SHOWN)] : rows;
  const y = shown.map((r) => r.name);
  const colour = (e) => (!e ? "#999" : sign(e.ci) > 0 ? "#1a9850" : sign(e.ci) < 0 ? "#b2182b" : "#7f7f7f");
  const trace = (key, axis, scale, label) => {
    const have = shown.filter((r) => r[key]);
    return { type: "scatter", mode: "markers", xaxis: axis, yaxis: "y", y: have.map((r) => r.name), x: have.map((r) => scale * r[key].value),
      error_x: { type: "data", symmetric: false, array: have.map((r) => scale * (r[key].ci[1] - r[key].value)),
        arrayminus: have.map((r) => scale * (r[key].value - r[key].ci[0])), thickness: 1.2, width: 3, color: "#888" },
      marker: { size: 8, color: have.map((r) => colour(r[key])) }, showlegend: false,
      customdata: have.map((r) => [scale * r[key].ci[0], scale * r[key].ci[1], r[key].n]),
      hovertemplate: `%{y} ablated alone<br>${label}: %{x:+.${scale === 100 ? 1 : 3}f} [%{customdata[0]:+.${scale === 100 ? 1 : 3}f}, %{customdata[1]:+.${scale === 100 ? 1 : 3}f}] (n = %{customdata[2]})<extra></extra>` };
  };
  box.style.height = `${Math.max(260, 90 + shown.length * 18)}px`;
  const zero = (axis) => ({ type: "line", xref: axis, yref: "paper", x0: 0, x1: 0, y0: 0, y1: 1, line: { color: "#333", width: 1, dash: "dash" } });
  plot(box, [trace("acc", "x", 100, "accuracy change (points)"), trace("lp", "x2", 1, "log-prob change")], {
    grid: { rows: 1, columns: 2, pattern: "independent" },
    xaxis: { domain: [0, 0.48], title: { text: "accuracy change (points, 95% CI)" }, zeroline: false },
    xaxis2: { domain: [0.52, 1], title: { text: "log-prob change of the target (95% CI)" }, zeroline: false },
    yaxis: { categoryorder: "array", categoryarray: y, autorange: "reversed", automargin: true, tickfont: { family: MONO, size: 11 } },
    shapes: [zero("x"), zero("x2")], margin: { l: 64, r: 16, t: 8, b: 48 },
  }, "single-head-ablations").then(() => {
    box.removeAllListeners && box.removeAllListeners("plotly_click");
    box.on("plotly_click", (ev) => {
      const m = ev.points && ev.points[0] && String(ev.points[0].y).match(/^L(\d+)H(\d+)$/);
      if (m) location.href = href("/head", { layer: m[1], head: m[2] });
    });
  });
  $("#single-note").textContent = (shown.length < rows.length ? `The ${SINGLE_SHOWN} heads whose ablation raises accuracy most and the ${SINGLE_SHOWN} that lower it most, of ${rows.length}. ` : "") +
    "Green: the interval lies above zero (the model does better without the head); red: below zero; grey: it includes zero. Click a head to open it.";
}

start(sweepPage);
