/* The token-level heatmap of one pattern, used on the cluster, scenario and /try pages. */
import { clear, el, errorBox } from "./dom.js";
import { api } from "./api.js";
import { plotText, prob, shorten, visible } from "./format.js";
import { MONO, plot, relayout } from "./plots.js";
import { PREDICTING, REGION_RGB, isControl, patternTokens, promptParts, tokenName } from "./tokens.js";

function niceStep(x) {
  if (x <= 1) return 1;
  const mag = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 2, 4, 5, 8]) if (m * mag >= x) return m * mag;
  return 10 * mag;
}

/** Pixels per tick label (9 px monospace, rotated on the key axis). */
const TICK_PITCH = 10;
/** The outline of the row (or column) pinned in the attention on the code: its pinned colour. */
const PINNED = "#2463b3";

/** A full heatmap of one pattern (log10 weights, or with scale "difference" a change of weights
 * in red and blue). Hovering a cell names its query and key
 * tokens (plotly's hover label and a readout under the plot); the axes label as many tokens
 * as fit, every one once zoomed in; the FIM markers are guide lines, the prefix and suffix
 * shaded bands, and the predicting row (``<fim_middle>``) is outlined in red. ``onPick(q, k)``:
 * a click on a cell. The returned element's ``mark(i, column)`` outlines token ``i``'s row (or
 * column; null: none), e.g. the token pinned in the attention on the code beside it. ``small``:
 * a shorter plot, for several side by side. */
export function patternView(pattern, { filename, caption, onPick, small = false } = {}) {
  const T = pattern.z.length;
  const tokens = patternTokens(pattern);
  const parts = promptParts(tokens);
  const markers = new Set(parts.markers.map(([i]) => i));
  const box = el("figure", { class: "pattern" });
  const div = el("div", { class: small ? "plot plot-pattern small" : "plot plot-pattern" });
  const readout = el("figcaption", { class: "readout" }, caption ||
    "Hover a cell: the query (row) attends to the key (column). Drag a box to zoom in until every token is labelled; double-click to zoom out.");
  box.append(div, readout);

  // hover: each row shares one label string and every row the same key labels (no T × T strings)
  const names = tokens.map((t, i) => plotText(tokenName(tokens, i)));
  const text = names.map((q) => Array(T).fill(q));
  const customdata = Array(T).fill(names);

  const tickLabel = (i, ax) => {
    const t = plotText(isControl(tokens[i]) ? tokens[i] : shorten(visible(tokens[i]), 14));
    if (ax === "y" && i === parts.predicting) return `<span style="color:${PREDICTING}">${t}</span>`;
    return markers.has(i) ? `<b>${t}</b>` : t;
  };
  /** Ticks for the visible ``range`` of an axis ``px`` long: every token when they fit,
   * else every 2nd, 5th, 10th…; the FIM markers always. */
  const ticks = (range, px, ax) => {
    const lo = Math.max(0, Math.ceil(Math.min(...range))), hi = Math.min(T - 1, Math.floor(Math.max(...range)));
    const step = niceStep(((hi - lo + 1) * TICK_PITCH) / Math.max(1, px));
    let vals = [];
    for (let i = Math.ceil(lo / step) * step; i <= hi; i += step) vals.push(i);
    for (const mk of markers) {
      if (mk < lo || mk > hi) continue;
      vals = vals.filter((v) => v === mk || Math.abs(v - mk) >= Math.max(1, step * 0.6));
      if (!vals.includes(mk)) vals.push(mk);
    }
    vals.sort((a, b) => a - b);
    return { tickvals: vals, ticktext: vals.map((i) => tickLabel(i, ax)) };
  };

  const shapes = [], annotations = [];
  const guide = { color: "rgba(255,255,255,0.75)", width: 1, dash: "dot" };
  for (const [i] of parts.markers) {
    // each marker's column and row between two guide lines (not over its own cells)
    for (const edge of [i - 0.5, i + 0.5]) {
      if (edge <= -0.5 || edge >= T - 0.5) continue;
      shapes.push({ type: "line", xref: "x", yref: "y domain", x0: edge, x1: edge, y0: 0, y1: 1, line: guide });
      shapes.push({ type: "line", xref: "x domain", yref: "y", x0: 0, x1: 1, y0: edge, y1: edge, line: guide });
    }
  }
  for (const r of parts.regions) {
    const rgb = REGION_RGB[r.name];
    // keys: the region's columns shaded (seen in the empty upper triangle) and a band above
    shapes.push({ type: "rect", layer: "below", xref: "x", yref: "y domain", x0: r.from - 0.5, x1: r.to + 0.5, y0: 0, y1: 1,
      fillcolor: `rgba(${rgb},0.13)`, line: { width: 0 } });
    shapes.push({ type: "rect", xref: "x", yref: "y domain", x0: r.from - 0.5, x1: r.to + 0.5, y0: 1.006, y1: 1.04,
      fillcolor: `rgb(${rgb})`, line: { width: 0 }, label: { text: r.name, font: { size: 10, color: "#fff" } } });
    // queries: a band right of the plot
    shapes.push({ type: "rect", xref: "x domain", yref: "y", x0: 1.006, x1: 1.04, y0: r.from - 0.5, y1: r.to + 0.5,
      fillcolor: `rgb(${rgb})`, line: { width: 0 }, label: { text: r.name, textangle: 90, font: { size: 10, color: "#fff" } } });
  }
  const q = parts.predicting;
  shapes.push({ type: "rect", xref: "x domain", yref: "y", x0: 0, x1: 1, y0: q - 0.5, y1: q + 0.5, line: { color: PREDICTING, width: 1.5 } });
  shapes.push({ type: "rect", xref: "x domain", yref: "y", x0: 1.006, x1: 1.04, y0: q - 0.5, y1: q + 0.5, fillcolor: PREDICTING, line: { color: PREDICTING, width: 2 } });
  // under the query band, right of the key axis's last label
  annotations.push({ xref: "x domain", yref: "y", x: 1.023, y: q + 0.5, xanchor: "center", yanchor: "top", yshift: -2, showarrow: false,
    textangle: -90, text: "predicting ▶", font: { size: 10, color: PREDICTING } });

  let drawn = false, marked = null;
  const markShapes = () => (marked == null ? [] : [marked.column
    ? { type: "rect", xref: "x", yref: "y domain", x0: marked.i - 0.5, x1: marked.i + 0.5, y0: 0, y1: 1, line: { color: PINNED, width: 2 } }
    : { type: "rect", xref: "x domain", yref: "y", x0: 0, x1: 1, y0: marked.i - 0.5, y1: marked.i + 0.5, line: { color: PINNED, width: 2 } }]);
  box.mark = (i, column = false) => {
    marked = i == null ? null : { i, column };
    if (drawn) relayout(div, { shapes: [...shapes, ...markShapes()] });
  };

  // a difference of weights on a diverging scale symmetric about 0 (more: red, less: blue)
  const difference = pattern.scale === "difference";
  const largest = difference ? Math.max(1e-6, ...pattern.z.flat().map((v) => Math.abs(v ?? 0))) : 0;
  const colours = difference
    ? { colorscale: "RdBu", zmin: -largest, zmax: largest, zmid: 0,
      colorbar: { title: { text: "Δ w", side: "right" }, thickness: 12, x: 1.05, tickformat: ".2~g" } }
    : { colorscale: "Viridis", zmin: pattern.floor, zmax: 0, colorbar: { title: { text: "log10 w", side: "right" }, thickness: 12, x: 1.05 } };
  const axis = { tickfont: { family: MONO, size: 9 }, showgrid: false, zeroline: false, ticks: "", tickmode: "array" };
  const full = [-0.5, T - 0.5];
  const draw = () => plot(div, [{
    type: "heatmap", z: pattern.z, text, customdata, hoverongaps: false, ...colours,
    hovertemplate: `query %{text} → key %{customdata} · ${difference ? "Δw %{z:+.3f}" : "10<sup>%{z:.1f}</sup>"}<extra></extra>`,
  }], {
    margin: { l: 84, r: 8, t: 24, b: 84 },
    hoverlabel: { font: { family: MONO, size: 12 }, align: "left" },
    xaxis: { ...axis, ...ticks(full, 520, "x"), tickangle: -90, title: { text: "key", standoff: 4 }, constrain: "domain" },
    yaxis: { ...axis, ...ticks(full, 520, "y"), autorange: "reversed", scaleanchor: "x", title: { text: "query", standoff: 4 }, constrain: "domain" },
    shapes: [...shapes, ...markShapes()], annotations,
  }, filename).then(() => {
    drawn = true;
    // label as many tokens as the visible range allows, again after every zoom or resize
    let busy = false, again = false;
    const retick = () => {
      const fl = div._fullLayout;
      if (busy) { again = true; return; }
      if (!fl || !fl.xaxis) return;
      const x = ticks(fl.xaxis.range, fl.xaxis._length, "x"), y = ticks(fl.yaxis.range, fl.yaxis._length, "y");
      const same = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);
      if (same(x.tickvals, fl.xaxis.tickvals || []) && same(y.tickvals, fl.yaxis.tickvals || [])) return;
      busy = true;
      relayout(div, { "xaxis.tickvals": x.tickvals, "xaxis.ticktext": x.ticktext, "yaxis.tickvals": y.tickvals, "yaxis.ticktext": y.ticktext })
        .then(() => { busy = false; if (again) { again = false; retick(); } }, () => { busy = false; });
    };
    div.on("plotly_relayout", (ev) => {
      if (Object.keys(ev || {}).some((k) => !/tick(vals|text)$/.test(k))) retick();
    });
    retick();
    div.on("plotly_hover", (ev) => {
      const p = ev.points[0];
      const qi = p.y, k = p.x;
      clear(readout).append("query ", el("code", { text: tokenName(tokens, qi, 40) }),
        qi === parts.predicting ? " (predicting)" : "",
        " → key ", el("code", { text: tokenName(tokens, k, 40) }),
        p.z == null ? "" : difference ? `   Δw = ${p.z >= 0 ? "+" : "−"}${prob(Math.abs(p.z))}` : `   w = ${prob(10 ** p.z)} (log10 ${Number(p.z).toFixed(2)})`);
    });
    if (onPick) div.on("plotly_click", (ev) => { const p = ev.points && ev.points[0]; if (p) onPick(p.y, p.x); });
  });
  // draw once the figure is in the document (plotly sizes itself from its container)
  requestAnimationFrame(() => requestAnimationFrame(draw));
  return box;
}

/** A pattern from ``url``, with a loading line and then any error in ``target``; null on error. */
export async function fetchPattern(target, url) {
  clear(target).append(el("p", { class: "hint loading", text: "Loading the pattern…" }));
  try {
    return await api(url);
  } catch (e) {
    clear(target).append(errorBox(e, "Pattern"));
    return null;
  }
}
