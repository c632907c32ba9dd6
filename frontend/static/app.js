/* apmae explorer: one init function per page (chosen by <body data-page>), plain DOM.
 *
 * Everything that comes from the API (code, targets, completions, tokens, paths, task names)
 * is inserted as text: el()/append() create text nodes, innerHTML is never used. Strings that
 * plotly renders (tick labels, hover text) go through plotText(), which escapes its
 * pseudo-HTML. Each view keeps its state in the URL (query string; the Try page's code in the
 * hash) so that a link reproduces it. */
"use strict";

(function () {
  // ---------------------------------------------------------------- DOM helpers

  const $ = (sel, root = document) => root.querySelector(sel);

  /** An element with properties and children; strings become text nodes, never HTML. */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v == null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = String(v);
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    return append(node, children);
  }

  function append(node, children) {
    for (const c of [children].flat(Infinity)) {
      if (c == null || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function clear(node) { node.replaceChildren(); return node; }

  /** A same-origin link to ``path`` with query parameters (empty ones left out). */
  function href(path, query) {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(query || {})) if (v != null && v !== "") p.set(k, v);
    const s = p.toString();
    return s ? `${path}?${s}` : path;
  }

  const params = () => new URLSearchParams(location.search);

  /** Replace the query string's ``changes`` (null or "" removes a key), keeping the hash. */
  function setParams(changes) {
    const p = params();
    for (const [k, v] of Object.entries(changes)) {
      if (v == null || v === "") p.delete(k); else p.set(k, v);
    }
    const s = p.toString();
    history.replaceState(null, "", location.pathname + (s ? `?${s}` : "") + location.hash);
  }

  function intParam(p, name, fallback = null) {
    const v = p.get(name);
    if (v == null || v === "" || !/^-?\d+$/.test(v)) return fallback;
    return parseInt(v, 10);
  }

  const enc = encodeURIComponent;

  // ---------------------------------------------------------------- formatting

  const pct = (v, d = 1) => (v == null || Number.isNaN(v) ? "—" : `${(100 * v).toFixed(d)}%`);
  const num = (v, d = 3) => (v == null || Number.isNaN(v) ? "—" : Number(v).toFixed(d));
  const headName = (l, h) => `L${l} H${h}`;
  /** A probability with 3 decimals, or 2 significant digits when smaller than 0.001. */
  const prob = (v) => (v == null ? "—" : v === 0 || v >= 0.001 ? Number(v).toFixed(3) : Number(v).toExponential(1));
  const clusterName = (label) => (label == null ? "—" : label < 0 ? "noise" : `c${label}`);

  /** `` [lo, hi]`` of a 95% interval (each end through ``f``), or "" without one. */
  function interval(ci, f = (x) => Number(x).toFixed(2)) {
    return ci && ci[0] != null && ci[1] != null ? ` [${f(ci[0])}, ${f(ci[1])}]` : "";
  }
  /** A value with its interval: "0.71 [0.66, 0.75]". */
  const withCi = (v, ci, d = 2) => (v == null ? "—" : `${num(v, d)}${interval(ci, (x) => num(x, d))}`);
  /** An accuracy change in points, signed: 0.05 → "+5.0" (a real minus sign below zero). */
  function delta(v, d = 1) {
    if (v == null || Number.isNaN(v)) return "—";
    const t = Math.abs(100 * v).toFixed(d);
    return Number(t) === 0 ? t : `${v > 0 ? "+" : "−"}${t}`;  // no sign on what rounds to zero
  }
  const deltaCi = (v, ci) => (v == null ? "—" : `${delta(v)}${interval(ci, delta)}`);

  /** How interval ``a`` lies against interval ``b``: "above", "below" or "level" (they
   * overlap); null when a value is missing. A missing interval counts as its point. */
  function versus(a, aci, b, bci) {
    if (a == null || b == null) return null;
    const [alo, ahi] = aci && aci[0] != null ? aci : [a, a];
    const [blo, bhi] = bci && bci[0] != null ? bci : [b, b];
    return alo > bhi ? "above" : ahi < blo ? "below" : "level";
  }

  /** Whitespace made visible, for tokens and short strings shown out of their code. */
  function visible(s) {
    return String(s ?? "").replace(/\n/g, "↵").replace(/\t/g, "⇥").replace(/ /g, "·");
  }

  function shorten(s, n) {
    s = String(s ?? "");
    return s.length > n ? `${s.slice(0, n - 1)}…` : s;
  }

  /** Plotly renders a pseudo-HTML subset in labels and hover text: escape it. */
  function plotText(s) {
    return String(s ?? "").replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function mark(ok, none = "—") {
    if (ok == null) return el("span", { class: "badge muted", text: none });
    return ok ? el("span", { class: "badge ok", text: "✓ right" }) : el("span", { class: "badge bad", text: "✗ wrong" });
  }

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, detail) { super(detail); this.status = status; }
  }

  /** JSON from the API; a failure throws ApiError with the server's ``detail``. */
  async function api(path, options = {}) {
    let res;
    try {
      res = await fetch(path, {
        ...options,
        headers: { Accept: "application/json", ...(options.body ? { "Content-Type": "application/json" } : {}) },
      });
    } catch (e) {
      throw new ApiError(0, `cannot reach the server (${e.message})`);
    }
    const type = res.headers.get("content-type") || "";
    const body = type.includes("json") ? await res.json().catch(() => null) : await res.text();
    if (!res.ok) {
      let detail = body && typeof body === "object" && body.detail != null ? body.detail : `${res.status} ${res.statusText}`;
      if (typeof detail !== "string") detail = JSON.stringify(detail);
      const retry = res.headers.get("Retry-After");
      if (res.status === 503 && retry) detail += ` (retry in ${retry} s)`;
      throw new ApiError(res.status, detail);
    }
    return body;
  }

  const post = (path, data) => api(path, { method: "POST", body: JSON.stringify(data) });

  function errorBox(err, what) {
    return el("div", { class: "error", role: "alert" },
      what ? el("b", { text: `${what}: ` }) : null, err && err.message ? err.message : String(err));
  }

  function status(message, kind = "error") {
    const box = $("#status");
    if (!box) return;
    if (!message) { box.hidden = true; clear(box); return; }
    box.hidden = false;
    box.className = `status ${kind}`;
    box.textContent = message;
  }

  // ---------------------------------------------------------------- downloads

  function download(filename, text, type) {
    const url = URL.createObjectURL(new Blob([text], { type }));
    const a = el("a", { href: url, download: filename });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  function csv(rows, columns) {
    const cell = (v) => {
      if (v == null) return "";
      if (typeof v === "object") v = JSON.stringify(v);
      v = String(v);
      return /[",\n\r]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
    };
    return [columns.join(","), ...rows.map((r) => columns.map((c) => cell(r[c])).join(","))].join("\r\n") + "\r\n";
  }

  // ---------------------------------------------------------------- plotly

  const FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';
  const MONO = 'ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace';
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#17becf", "#bcbd22", "#393b79", "#ad494a", "#637939", "#7b4173", "#3182bd", "#e6550d"];
  const NOISE = "#b0b0b0";
  const PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

  function plot(div, data, layout, filename) {
    const base = {
      margin: { l: 56, r: 16, t: 12, b: 48 },
      font: { family: FONT, size: 12, color: "#222" },
      paper_bgcolor: "#fff", plot_bgcolor: "#fff",
      hoverlabel: { font: { family: MONO, size: 12 } },
      legend: { orientation: "h", y: -0.2 },
    };
    const config = { ...PLOT_CONFIG, toImageButtonOptions: { format: "png", scale: 2, filename: filename || "apmae" } };
    return Plotly.newPlot(div, data, { ...base, ...layout }, config);
  }

  // ---------------------------------------------------------------- patterns, token by token

  const FIM_PREFIX = "<fim_prefix>", FIM_SUFFIX = "<fim_suffix>", FIM_MIDDLE = "<fim_middle>";
  /** Control tokens as the tokenizer decodes them (prompt text that spells one is split into
   * ordinary tokens, so a whole token equal to one of these is the control token itself). */
  const isControl = (t) => /^<(fim_(prefix|suffix|middle|pad)|\|endoftext\|)>$/.test(String(t));
  const REGION_RGB = { prefix: "76,120,168", suffix: "245,133,24" };
  const PREDICTING = "#d62728";

  /** A prompt's parts from its tokens: the FIM markers' positions, the predicting position
   * (``<fim_middle>``, else the last query), the prefix and suffix token ranges and where the
   * masked span was (just before ``<fim_suffix>``). A left-to-right prompt has no markers. */
  function promptParts(tokens) {
    const T = tokens.length;
    const p = tokens.indexOf(FIM_PREFIX), s = tokens.indexOf(FIM_SUFFIX), m = tokens.lastIndexOf(FIM_MIDDLE);
    const regions = [];
    if (p >= 0 && s > p + 1) regions.push({ name: "prefix", from: p + 1, to: s - 1 });
    const end = (m > s ? m : T) - 1;
    if (s >= 0 && end > s) regions.push({ name: "suffix", from: s + 1, to: end });
    return {
      predicting: m >= 0 ? m : T - 1, regions, hole: s >= 0 ? s : null,
      markers: [[p, FIM_PREFIX], [s, FIM_SUFFIX], [m, FIM_MIDDLE]].filter(([i]) => i >= 0),
    };
  }

  /** A token for reading out of its code: control tokens as they are, others quoted with
   * their whitespace made visible. Plain text: escape it (plotText) before plotly shows it. */
  const tokenText = (t, n = 24) => (isControl(t) ? String(t) : `"${shorten(visible(t), n)}"`);
  const tokenName = (tokens, i, n = 24) => `${i} ${tokenText(tokens[i], n)}`;

  /** The token texts of a pattern (positions when the server sent none). */
  const patternTokens = (pattern) => (pattern.tokens && pattern.tokens.length === pattern.z.length
    ? pattern.tokens : Array.from({ length: pattern.z.length }, (_, i) => `#${i}`));

  /** A tick step of 1, 2, 4, 5 or 8 × 10^k, at least ``x``. */
  function niceStep(x) {
    if (x <= 1) return 1;
    const mag = 10 ** Math.floor(Math.log10(x));
    for (const m of [1, 2, 4, 5, 8]) if (m * mag >= x) return m * mag;
    return 10 * mag;
  }

  /** Pixels per tick label (9 px monospace, rotated on the key axis). */
  const TICK_PITCH = 10;

  /** A full heatmap of one pattern (log10 weights). Hovering a cell names its query and key
   * tokens (plotly's hover label and a readout under the plot); the axes label as many tokens
   * as fit, every one once zoomed in; the FIM markers are guide lines, the prefix and suffix
   * shaded bands, and the predicting row (``<fim_middle>``) is outlined in red. ``onPick(q, k)``:
   * a click on a cell. */
  function patternView(pattern, { filename, caption, onPick } = {}) {
    const T = pattern.z.length;
    const tokens = patternTokens(pattern);
    const parts = promptParts(tokens);
    const markers = new Set(parts.markers.map(([i]) => i));
    const box = el("figure", { class: "pattern" });
    const div = el("div", { class: "plot plot-pattern" });
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

    const axis = { tickfont: { family: MONO, size: 9 }, showgrid: false, zeroline: false, ticks: "", tickmode: "array" };
    const full = [-0.5, T - 0.5];
    const draw = () => plot(div, [{
      type: "heatmap", z: pattern.z, text, customdata, colorscale: "Viridis", zmin: pattern.floor, zmax: 0, hoverongaps: false,
      colorbar: { title: { text: "log10 w", side: "right" }, thickness: 12, x: 1.05 },
      hovertemplate: "query %{text} → key %{customdata} · 10<sup>%{z:.1f}</sup><extra></extra>",
    }], {
      margin: { l: 84, r: 8, t: 24, b: 84 },
      hoverlabel: { font: { family: MONO, size: 12 }, align: "left" },
      xaxis: { ...axis, ...ticks(full, 520, "x"), tickangle: -90, title: { text: "key", standoff: 4 }, constrain: "domain" },
      yaxis: { ...axis, ...ticks(full, 520, "y"), autorange: "reversed", scaleanchor: "x", title: { text: "query", standoff: 4 }, constrain: "domain" },
      shapes, annotations,
    }, filename).then(() => {
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
        Plotly.relayout(div, { "xaxis.tickvals": x.tickvals, "xaxis.ticktext": x.ticktext, "yaxis.tickvals": y.tickvals, "yaxis.ticktext": y.ticktext })
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
          `   w = ${p.z == null ? "—" : prob(10 ** p.z)} (log10 ${Number(p.z).toFixed(2)})`);
      });
      if (onPick) div.on("plotly_click", (ev) => { const p = ev.points && ev.points[0]; if (p) onPick(p.y, p.x); });
    });
    // draw once the figure is in the document (plotly sizes itself from its container)
    requestAnimationFrame(() => requestAnimationFrame(draw));
    return box;
  }

  /** A pattern from ``url``, with a loading line and then any error in ``target``; null on error. */
  async function fetchPattern(target, url) {
    clear(target).append(el("p", { class: "hint loading", text: "Loading the pattern…" }));
    try {
      return await api(url);
    } catch (e) {
      clear(target).append(errorBox(e, "Pattern"));
      return null;
    }
  }

  const ATT_HINT = "Shaded by what the predicting position attends to. Hover a token for what it attends to, click to pin it (or click a heatmap cell to pin its query).";

  /** The prompt laid out as its code, one span per token, each shaded by a head's attention:
   * by default what the predicting position attends to (its row). Hovering a token shows its
   * row, clicking pins it, and a toggle shows its column instead (what attends to it).
   * ``sources``: [{label, pattern}] of the same prompt (a select switches between them);
   * ``hole``: the masked span's text, shown where it was cut out (it is not in the prompt).
   * The returned element's ``pin(i)`` pins token ``i`` (e.g. from a heatmap click). */
  function attentionCode(sources, { hole = null } = {}) {
    const first = sources[0].pattern;
    if (!first.tokens || first.tokens.length !== first.z.length) {
      return Object.assign(el("p", { class: "hint", text: "The prompt's tokens are not available, so its attention cannot be shown on the code." }), { pin: () => {} });
    }
    const tokens = first.tokens;
    const T = tokens.length;
    const parts = promptParts(tokens);
    const control = tokens.map(isControl);
    const st = { source: 0, column: false, scale: "linear", pinned: null, hover: null };
    const box = el("figure", { class: "attcode" });

    const which = sources.length > 1 ? el("select", { class: "att-source", "aria-label": "which run" },
      sources.map((s, i) => el("option", { value: i, text: s.label }))) : null;
    const column = el("input", { type: "checkbox", class: "att-column" });
    const scale = el("select", { class: "att-scale", "aria-label": "shading" },
      el("option", { value: "linear", text: "linear" }), el("option", { value: "log", text: "log (3 decades)" }));
    const back = el("button", { type: "button", class: "link att-back", text: "back to the predicting position", hidden: true });
    const controls = el("div", { class: "att-controls" },
      which ? el("label", null, "run ", which) : null,
      el("label", { title: "shade the tokens that attend to the chosen token (its column) instead of those it attends to (its row)" },
        column, " what attends to it (column)"),
      el("label", null, "shading ", scale), back);

    const spans = tokens.map((t, i) => el("span", {
      class: control[i] ? "tok ctl" : "tok", dataset: { i },
      title: control[i] ? `${i} ${t}` : null,
    }, t));
    const holeMark = el("mark", { class: "target hole", title: "the masked span: cut out of the prompt, the model predicts it" }, hole ? hole : "⎀");
    const pre = el("pre", { class: "code attcode-text" });
    spans.forEach((s, i) => {
      if (i === parts.hole) pre.append(holeMark);
      pre.append(s);
    });
    if (parts.hole == null) pre.append(holeMark);  // left to right: the span follows the prompt
    const readout = el("figcaption", { class: "readout" });
    box.append(controls, pre, readout);

    const render = () => {
      const q = st.hover ?? st.pinned ?? parts.predicting;
      const z = sources[st.source].pattern.z;
      const logs = st.column ? z.map((r) => r[q]) : z[q];
      const w = logs.map((v) => (v == null ? 0 : 10 ** v));
      // shading relative to the strongest code token: control tokens (often an attention sink) clip at full
      let ref = 0;
      for (let i = 0; i < T; i++) if (!control[i] && w[i] > ref) ref = w[i];
      if (!ref) ref = Math.max(0, ...w) || 1;
      const lref = Math.log10(ref);
      const rgb = st.column ? "44,127,184" : "255,127,14";
      spans.forEach((s, i) => {
        const a = w[i] <= 0 ? 0 : st.scale === "log" ? Math.min(1, Math.max(0, (Math.log10(w[i]) - lref) / 3 + 1)) : Math.min(1, w[i] / ref);
        s.style.backgroundColor = a >= 0.02 ? `rgba(${rgb},${(0.85 * a).toFixed(3)})` : "";
        s.classList.toggle("att", a >= 0.1 && i !== q);
        s.classList.toggle("focus", i === q);
        s.classList.toggle("pinned", i === st.pinned);
        s.classList.toggle("predicting", i === parts.predicting);
      });
      const top = w.map((x, i) => [x, i]).filter(([x]) => x > 0).sort((a, b) => b[0] - a[0]).slice(0, 6);
      append(clear(readout), [el("code", { text: tokenName(tokens, q, 40) }),
        q === parts.predicting ? " (the predicting position)" : "", st.pinned === q && st.hover == null ? " (pinned: click it again to unpin)" : "",
        st.column ? " is attended to most by " : " attends to ",
        top.map(([x, i], k) => [k ? ", " : "", el("code", { text: tokenName(tokens, i, 24) }), ` ${pct(x)}`])]);
      back.hidden = st.pinned == null;
    };

    const tokenAt = (ev) => { const s = ev.target.closest && ev.target.closest(".tok"); return s ? Number(s.dataset.i) : null; };
    pre.addEventListener("mouseover", (ev) => { const i = tokenAt(ev); if (i != null && i !== st.hover) { st.hover = i; render(); } });
    pre.addEventListener("mouseleave", () => { if (st.hover != null) { st.hover = null; render(); } });
    pre.addEventListener("click", (ev) => {
      const i = tokenAt(ev);
      if (i == null) return;
      st.pinned = st.pinned === i ? null : i;
      render();
    });
    column.addEventListener("change", () => { st.column = column.checked; render(); });
    scale.addEventListener("change", () => { st.scale = scale.value; render(); });
    if (which) which.addEventListener("change", () => { st.source = Number(which.value); render(); });
    back.addEventListener("click", () => { st.pinned = null; st.hover = null; render(); });

    box.pin = (i) => {
      if (!(i >= 0 && i < T)) return;
      st.pinned = i; st.hover = null; render();
      // into view inside the code box only (not the page)
      const top = spans[i].offsetTop;
      if (top < pre.scrollTop || top > pre.scrollTop + pre.clientHeight - 20) pre.scrollTop = Math.max(0, top - pre.clientHeight / 2);
    };
    // keyboard: arrows move the pinned token, Escape goes back to the predicting position
    pre.tabIndex = 0;
    pre.setAttribute("aria-label", "the prompt's tokens shaded by attention: left and right arrows move the pinned token, Escape unpins it");
    pre.addEventListener("keydown", (ev) => {
      const cur = st.pinned ?? parts.predicting;
      if (ev.key === "Escape") { st.pinned = null; render(); }
      else if (ev.key === "ArrowRight") box.pin(Math.min(T - 1, cur + 1));
      else if (ev.key === "ArrowLeft") box.pin(Math.max(0, cur - 1));
      else return;
      ev.preventDefault();
    });
    render();
    // the masked span (where the prediction goes) in view
    requestAnimationFrame(() => { pre.scrollTop = Math.max(0, holeMark.offsetTop - pre.clientHeight / 2); });
    return box;
  }

  // ---------------------------------------------------------------- shared views

  /** Code with the masked span highlighted. ``context`` lines either side (null: all). */
  function codeView(prefix, target, suffix, { context = null, label = "masked span" } = {}) {
    const wrap = el("div", { class: "code-wrap" });
    const render = (ctx) => {
      let pre = prefix ?? "", suf = suffix ?? "", cutBefore = false, cutAfter = false;
      if (ctx != null) {
        const lines = pre.split("\n");
        if (lines.length > ctx + 1) { pre = lines.slice(-(ctx + 1)).join("\n"); cutBefore = true; }
        const after = suf.split("\n");
        if (after.length > ctx + 1) { suf = after.slice(0, ctx + 1).join("\n"); cutAfter = true; }
      }
      const m = el("mark", { class: "target", title: label }, target ? target : "⎀");
      const code = el("pre", { class: "code" }, cutBefore ? el("span", { class: "elided", text: "…\n" }) : null,
        pre, m, suf, cutAfter ? el("span", { class: "elided", text: "\n…" }) : null);
      const children = [code];
      if (cutBefore || cutAfter) {
        children.push(el("button", { type: "button", class: "link", text: "show all the code", onclick: () => render(null) }));
      } else if (ctx == null && context != null) {
        children.push(el("button", { type: "button", class: "link", text: "show less", onclick: () => render(context) }));
      }
      clear(wrap).append(...children);
      if (ctx == null) requestAnimationFrame(() => { code.scrollTop = Math.max(0, m.offsetTop - code.clientHeight / 2); });
    };
    render(context);
    return wrap;
  }

  /** A layer × head table; ``cell(l, h)`` makes each cell's content. */
  function headGrid(layers, heads, cell) {
    const head = el("tr", null, el("th", { class: "corner", text: "" }));
    for (let h = 0; h < heads; h++) head.append(el("th", { scope: "col", text: `H${h}` }));
    const body = el("tbody");
    for (let l = 0; l < layers; l++) {
      const row = el("tr", null, el("th", { scope: "row", text: `L${l}` }));
      for (let h = 0; h < heads; h++) row.append(el("td", { dataset: { layer: l, head: h } }, cell(l, h)));
      body.append(row);
    }
    return el("table", { class: heads > 12 ? "headgrid dense" : "headgrid" }, el("thead", null, head), body);
  }

  function thumb(src, alt) {
    const img = el("img", { src, alt, loading: "lazy", width: 64, height: 64, decoding: "async" });
    img.addEventListener("error", () => { img.classList.add("broken"); img.alt = `${alt} (unavailable)`; });
    return img;
  }

  const scenarioThumb = (key, l, h) => `/api/scenarios/${enc(key)}/heads/${l}/${h}/thumb.png`;
  const scenarioPattern = (key, l, h) => `/api/scenarios/${enc(key)}/heads/${l}/${h}/pattern`;

  function facts(dl, rows) {
    clear(dl);
    for (const [k, v] of rows) {
      if (v == null) continue;
      dl.append(el("dt", { text: k }), el("dd", null, v));
    }
  }

  /** A one-line mix of tasks: the largest ones, then how many more. */
  function taskMix(byTask, top = 3) {
    const entries = Object.entries(byTask || {}).sort((a, b) => b[1] - a[1]);
    const shown = entries.slice(0, top).map(([t, n]) => `${t} ${n}`);
    if (entries.length > top) shown.push(`+${entries.length - top} more`);
    return shown.join(", ");
  }

  function taskLines(byTask, top = 3) {
    const entries = Object.entries(byTask || {}).sort((a, b) => b[1] - a[1]);
    const lines = entries.slice(0, top).map(([t, n]) => el("div", null, el("span", { text: t }), el("span", { class: "n", text: n })));
    if (entries.length > top) lines.push(el("div", { class: "more", text: `+${entries.length - top} more task${entries.length - top === 1 ? "" : "s"}` }));
    return lines;
  }

  function correctBar(byCorrect) {
    const c = (byCorrect && byCorrect.correct) || 0, i = (byCorrect && byCorrect.incorrect) || 0;
    const share = c + i ? c / (c + i) : 0;
    return el("div", { class: "mix", title: `${c} correct, ${i} incorrect (first token)` },
      el("div", { class: "bar" }, el("span", { class: "fill", style: `width:${(100 * share).toFixed(1)}%` })),
      el("span", { class: "hint", text: `${pct(share, 0)} correct (${c}/${c + i})` }));
  }

  // ---------------------------------------------------------------- markdown (model card)

  function inline(text) {
    const out = [];
    const re = /(`[^`]+`|\*\*[^*]+\*\*|\*[^*\s][^*]*\*|\[[^\]]+\]\([^)\s]+\))/g;
    let last = 0, m;
    while ((m = re.exec(text))) {
      if (m.index > last) out.push(text.slice(last, m.index));
      const t = m[0];
      if (t.startsWith("`")) out.push(el("code", { text: t.slice(1, -1) }));
      else if (t.startsWith("**")) out.push(el("strong", { text: t.slice(2, -2) }));
      else if (t.startsWith("*")) out.push(el("em", { text: t.slice(1, -1) }));
      else {
        const [, label, url] = t.match(/^\[([^\]]+)\]\(([^)\s]+)\)$/);
        out.push(/^https?:\/\//i.test(url) ? el("a", { href: url, rel: "noopener", text: label }) : label);
      }
      last = m.index + t.length;
    }
    if (last < text.length) out.push(text.slice(last));
    return out;
  }

  /** A small Markdown subset (headings, paragraphs, lists, tables, fenced code) as DOM. */
  function markdown(md) {
    const root = el("div");
    const lines = md.replace(/\r\n/g, "\n").split("\n");
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      if (/^```/.test(line)) {
        const body = [];
        for (i++; i < lines.length && !/^```/.test(lines[i]); i++) body.push(lines[i]);
        i++;
        root.append(el("pre", { class: "code" }, body.join("\n")));
      } else if (/^#{1,6}\s/.test(line)) {
        const level = Math.min(6, line.match(/^#+/)[0].length + 2);
        root.append(el(`h${level}`, null, inline(line.replace(/^#+\s*/, ""))));
        i++;
      } else if (/^\s*\|/.test(line)) {
        const rows = [];
        for (; i < lines.length && /^\s*\|/.test(lines[i]); i++) rows.push(lines[i]);
        const cells = (r) => r.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());
        const table = el("table", { class: "data compact" });
        const body = el("tbody");
        rows.forEach((r, k) => {
          if (k === 1 && /^[\s|:-]+$/.test(r)) return;
          const tag = k === 0 ? "th" : "td";
          const tr = el("tr", null, cells(r).map((c) => el(tag, null, inline(c))));
          if (k === 0) table.append(el("thead", null, tr)); else body.append(tr);
        });
        table.append(body);
        root.append(table);
      } else if (/^\s*[-*]\s/.test(line)) {
        const ul = el("ul");
        while (i < lines.length && /^\s*[-*]\s/.test(lines[i])) {
          let item = lines[i].replace(/^\s*[-*]\s/, "");
          for (i++; i < lines.length && /^\s{2,}\S/.test(lines[i]) && !/^\s*[-*]\s/.test(lines[i]); i++) item += ` ${lines[i].trim()}`;
          ul.append(el("li", null, inline(item)));
        }
        root.append(ul);
      } else if (!line.trim()) {
        i++;
      } else {
        const para = [];
        for (; i < lines.length && lines[i].trim() && !/^(```|#{1,6}\s|\s*\||\s*[-*]\s)/.test(lines[i]); i++) para.push(lines[i].trim());
        root.append(el("p", null, inline(para.join(" "))));
      }
    }
    return root;
  }

  // ---------------------------------------------------------------- Overview

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
    try { heads = await api("/api/heads"); } catch (e) { clear($("#grid-plot")).append(errorBox(e, "Heads")); return; }
    if (!heads.length) { clear($("#grid-plot")).append(el("p", { class: "hint", text: "No clustered heads in this run yet (run `apmae cluster`)." })); return; }
    const draw = () => { setParams({ colour: select.value === "n_clusters" ? null : select.value }); headHeatmap(heads, run, select.value); };
    select.addEventListener("change", draw);
    draw();
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
    /** "above the model's own confidence in AUC (0.71 [..] vs 0.62 [..])" and the like. */
    const compare = (a, b, m, what, them) => {
      const r = versus(a[m], a[`${m}_ci`], b[m], b[`${m}_ci`]);
      if (!r) return `not measurable in ${what} here (too few of both classes${m === "within_task_auc" ? " within tasks" : ""})`;
      return `${RELATION[r].replace(" (intervals overlap)", "")} ${them} in ${what} (${r === "level" ? "intervals overlap: " : ""}${pair(a, b, m)})`;
    };
    if (live && live.attention && lm) {
      out.push(`The live attention-only predictor (${live.name}) is ${compare(live, lm, "auc", "AUC", "the model's own confidence (lm_confidence)")}, ` +
        `and ${compare(live, lm, "within_task_auc", "within-task AUC", "it")}.`);
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

  // ---------------------------------------------------------------- selective intervention

  const METHODS = {
    shap: "heads with the most negative SHAP over wrong completions (the paper's selection)",
    causal: "heads whose single ablation raised train accuracy most",
    greedy: "forward selection on the train split",
    conditional: "a head ablated only for inputs whose pattern at that head falls in a failure-enriched cluster",
  };
  const methodOrder = (names) => [...Object.keys(METHODS).filter((m) => names.includes(m)), ...names.filter((m) => !(m in METHODS) && m !== "random")];
  const sizeOrder = (sizes) => Object.keys(sizes || {}).sort((a, b) => Number(a) - Number(b));

  /** One sentence from the server's ``verdict``: the best method, whether any helps, the paper. */
  function interventionVerdict(v) {
    if (!v || !v.best) return "No selective intervention was measured.";
    const b = v.best;
    const parts = [`Best: ${b.method} with ${b.size} head${b.size === 1 ? "" : "s"}, ${deltaCi(b.accuracy_change, b.accuracy_change_ci)} points of accuracy, ` +
      `beating ${pct(b.share_of_random_beaten, 0)} of random head sets of that size.`];
    const helps = v.helps || [];
    parts.push(helps.length
      ? `Helps (interval above zero and beating ≥ 95% of random sets): ${helps.map((h) => `${h.method} with ${h.size} head${h.size === 1 ? "" : "s"}`).join(", ")}.`
      : "None helps: no method has its interval above zero while beating ≥ 95% of random sets.");
    if (v.paper_claim) {
      const rel = b.relative_change == null ? "" : ` The best gain is ${b.relative_change >= 0 ? "+" : ""}${(100 * b.relative_change).toFixed(1)}% of the unablated accuracy.`;
      parts.push(`The paper's claim (“${v.paper_claim}”): ${!v.reproduced ? "does not reproduce here (no selective intervention helps)"
        : v.paper_gain_reached ? "reproduces here, at its size" : "a selective intervention helps here, but by less than the paper's 13.6%"}.${rel}`);
    }
    return parts.join(" ");
  }

  /** The pooled intervention table and its verdict into ``box``; ``iv``: the report's section. */
  function interventionView(box, iv) {
    clear(box);
    if (!iv) { box.append(el("p", { class: "hint", text: "No selective interventions in this run yet (run `apmae sweep`)." })); return; }
    if (iv.skipped) { box.append(el("p", { class: "hint", text: `Skipped: ${iv.skipped}` })); return; }
    box.append(el("p", { class: "verdict", id: box.id ? `${box.id}-verdict` : null, text: interventionVerdict(iv.verdict) }));
    const pooled = iv.all || {};
    const body = el("tbody");
    for (const method of methodOrder(Object.keys(pooled))) {
      for (const size of sizeOrder(pooled[method])) {
        const r = pooled[method][size];
        const helps = ((iv.verdict && iv.verdict.helps) || []).some((x) => x.method === method && String(x.size) === size);
        body.append(el("tr", { class: helps ? "helps" : null },
          el("td", { title: METHODS[method] || null, text: method }),
          el("td", { class: "num", text: size }),
          el("td", { class: "num", text: deltaCi(r.accuracy_change, r.accuracy_change_ci) }),
          el("td", { class: "num", text: r.net_flips ?? "—" }),
          el("td", { class: "num", text: delta(r.random_mean) }),
          el("td", { class: "num", text: r.random_range ? interval(r.random_range, delta).trim() : "—" }),
          el("td", { class: "num", text: pct(r.share_of_random_beaten, 0) }),
          el("td", { class: "num", text: `${r.n ?? "—"}${r.tasks != null ? ` (${r.tasks} task${r.tasks === 1 ? "" : "s"})` : ""}` })));
      }
    }
    if (!body.children.length) body.append(el("tr", null, el("td", { colspan: 8, class: "hint", text: "No pooled results." })));
    box.append(el("div", { class: "table-wrap flat" }, el("table", { class: "data compact", id: box.id ? `${box.id}-table` : null },
      el("thead", null, el("tr", null, ["method", "heads ablated", "accuracy change (points) [95% CI]", "net flips", "random heads: mean",
        "random heads: 95% range", "random sets beaten", "held-out scenarios"].map((t, i) => el("th", { class: i ? "num" : null, text: t })))), body)));
    const st = iv.settings || {};
    box.append(el("p", { class: "hint" },
      `Heads chosen on ${st.train_used ?? "the"} train-split scenarios${st.train_per_task ? ` (up to ${st.train_per_task} per task)` : ""}, `,
      `the change measured on ${st.heldout_used ?? "the"} held-out scenarios${st.heldout_per_task ? ` (up to ${st.heldout_per_task} per task)` : ""}, `,
      `beside ${st.random_sets ?? "several"} random head sets of the same size per task. First-token accuracy; a change of 0.05 is +5 points. `,
      "Methods: ", Object.keys(pooled).length ? methodOrder(Object.keys(pooled)).map((m, i) => [i ? "; " : "", el("i", { text: m }), `: ${METHODS[m] || "—"}`]) : "—", "."));
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
    plot(div, [bar("first token", "accuracy_first_token", "#4c78a8"), bar("exact", "accuracy_exact", "#9ecae9")], {
      barmode: "group", bargap: 0.25, margin: { l: 150, r: 16, t: 8, b: 44 },
      xaxis: { tickformat: ".0%", range: [0, 1], title: { text: "accuracy" } }, yaxis: { autorange: "reversed", automargin: true },
      legend: { orientation: "h", x: 0, y: 1.08, traceorder: "normal" },
    }, "accuracy-per-task");
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
    const note = $("#rec-note");
    note.append(`Masked-patch MSE on ${rec.n_patterns} held-out patterns (${rec.n_scenarios} scenarios), per layer and overall. `);
    if (rec.best_baseline) note.append(`AP-MAE's error is ${num(rec.ratio_to_best_baseline, 2)}× that of the best baseline (${names[rec.best_baseline] || rec.best_baseline}). `);
    note.append("Baselines: the head's mean image, the mean of the visible patches, the nearest visible patch.");
    const gen = report.generalization || rec.generalization;
    if (gen && gen.other_run) {
      note.append(el("br"), `On run ${gen.other_run}'s patterns (${gen.other_model}): MSE ${num(gen.mse_other_model, 4)}, ${pct(gen.degradation)} worse.`);
      if (gen.ratio_to_best_baseline_other_model !== undefined) note.append(` There it is ${num(gen.ratio_to_best_baseline_other_model, 2)}× that model's best baseline.`);
    }
  }

  async function modelCard(run) {
    if (!run.model_card) return;
    const details = $("#model-card");
    try {
      const res = await fetch(run.model_card);
      if (!res.ok) return;
      const text = await res.text();
      $("#model-card-body").append(markdown(text));
      details.hidden = false;
    } catch (_e) { /* no card: nothing to show */ }
  }

  // ---------------------------------------------------------------- Head

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

  // ---------------------------------------------------------------- Cluster

  const MEMBERS_PER_PAGE = 10;

  async function clusterPage() {
    const p = params();
    const id = intParam(p, "id");
    if (id == null) throw new Error("no cluster given: open one from a head's page (the link needs ?id=)");
    const offset = Math.max(0, intParam(p, "offset", 0));
    const c = await api(`/api/clusters/${id}?limit=${MEMBERS_PER_PAGE}&offset=${offset}`);
    const name = c.label < 0 ? "noise" : `cluster ${c.label}`;
    document.title = `${name} of ${headName(c.layer, c.head)} · ${document.title}`;
    $("#cluster-title").textContent = `${c.label < 0 ? "Noise" : `Cluster ${c.label}`} of head ${headName(c.layer, c.head)}`;
    const crumb = $("#crumb-head");
    crumb.href = href("/head", { layer: c.layer, head: c.head });
    crumb.textContent = headName(c.layer, c.head);
    $("#crumb-cluster").textContent = name;
    const summary = $("#cluster-summary");
    summary.append(`${c.size} scenarios. Tasks: ${taskMix(c.by_task, 6)}. `, correctBar(c.by_correct));

    // exemplars: thumbnails, one full heatmap at a time (state: ?ex=)
    const exemplars = c.exemplars || [];
    const strip = $("#exemplars"), detail = $("#exemplar-detail");
    let shown = 0;
    const show = (i) => {
      const key = exemplars[i];
      setParams({ ex: i ? i : null });
      for (const b of strip.querySelectorAll("button")) b.classList.toggle("selected", Number(b.dataset.i) === i);
      const plotBox = el("div"), codeBox = el("div", { class: "att-box" });
      clear(detail).append(
        el("p", { class: "hint" }, "Exemplar ", el("a", { href: href("/scenario", { key, layer: c.layer, head: c.head }), text: key }),
          key === c.medoid ? " (the medoid)" : ""),
        el("div", { class: "cols two pattern-and-code" }, plotBox, codeBox));
      const mine = ++shown;
      Promise.all([fetchPattern(plotBox, scenarioPattern(key, c.layer, c.head)), api(`/api/scenarios/${enc(key)}`).catch(() => null)])
        .then(([pattern, sc]) => {
          if (!pattern || mine !== shown) return;
          const code = attentionCode([{ label: key, pattern }], { hole: sc ? sc.target : null });
          clear(plotBox).append(patternView(pattern, { filename: `pattern-${key}-L${c.layer}-H${c.head}`, onPick: (q) => code.pin(q) }));
          clear(codeBox).append(el("h3", { text: "Attention on the code" }), el("p", { class: "hint", text: ATT_HINT }), code);
        });
    };
    exemplars.forEach((key, i) => {
      strip.append(el("button", { type: "button", class: "thumb-button", dataset: { i }, title: `exemplar ${key}`, onclick: () => show(i) },
        thumb(scenarioThumb(key, c.layer, c.head), `exemplar ${key}`),
        el("span", { class: "cap", text: key === c.medoid ? `${key} ★` : key })));
    });
    if (exemplars.length) {
      const ex = intParam(p, "ex", 0);
      show(ex >= 0 && ex < exemplars.length ? ex : 0);
    } else {
      strip.append(el("p", { class: "hint", text: "No exemplars stored for this cluster." }));
    }

    // members, a page at a time, with their code
    $("#members-count").textContent = c.size ? `${offset + 1}–${Math.min(offset + c.members.length, c.size)} of ${c.size}` : "";
    pager($("#members-pager"), offset, MEMBERS_PER_PAGE, c.size, (o) => href("/cluster", { id, offset: o || null, ex: p.get("ex") }));
    const list = $("#members");
    for (const m of c.members) {
      const article = el("article", { class: "member" },
        el("header", null,
          el("a", { href: href("/scenario", { key: m.key, layer: c.layer, head: c.head }), text: m.key }),
          el("span", { class: "tag", text: m.task }), el("span", { class: "path", text: m.path }),
          el("span", { class: "hint", text: m.split }), mark(m.correct_first_token)),
        el("div", { class: "member-code" }, el("p", { class: "hint", text: "Loading the code…" })),
        el("p", { class: "completion" }, "target ", el("code", { text: visible(m.target) }), "  completion ", el("code", { text: visible(m.completion) })));
      list.append(article);
    }
    await Promise.all(c.members.map(async (m, i) => {
      const box = list.children[i].querySelector(".member-code");
      try {
        const s = await api(`/api/scenarios/${enc(m.key)}`);
        clear(box).append(s.prefix == null ? el("p", { class: "hint", text: "The prompt's text is not available." }) : codeView(s.prefix, s.target, s.suffix, { context: 4 }));
      } catch (e) {
        clear(box).append(errorBox(e, "Code"));
      }
    }));
  }

  function pager(box, offset, limit, total, link) {
    clear(box);
    const prev = offset > 0 ? el("a", { href: link(Math.max(0, offset - limit)), text: "← previous", rel: "prev" }) : el("span", { class: "muted", text: "← previous" });
    const next = offset + limit < total ? el("a", { href: link(offset + limit), text: "next →", rel: "next" }) : el("span", { class: "muted", text: "next →" });
    box.append(prev, next);
  }

  // ---------------------------------------------------------------- Scenarios

  const SCENARIO_COLUMNS = ["key", "task", "split", "path", "start", "end", "target", "completion", "correct_first_token", "correct_exact", "logprob_target_first"];

  async function scenariosPage() {
    const p = params();
    const form = $("#filters");
    const limit = Math.min(500, Math.max(1, intParam(p, "limit", 50)));
    const offset = Math.max(0, intParam(p, "offset", 0));
    const run = await api("/api/run").catch(() => ({ tasks: [] }));
    for (const t of run.tasks || []) $("#f-task").append(el("option", { value: t, text: t }));
    $("#f-q").value = p.get("q") || "";
    $("#f-task").value = (run.tasks || []).includes(p.get("task")) ? p.get("task") : "";
    $("#f-correct").value = ["true", "false"].includes(p.get("correct")) ? p.get("correct") : "";
    $("#f-split").value = ["train", "test"].includes(p.get("split")) ? p.get("split") : "";

    const filters = () => ({ q: $("#f-q").value.trim(), task: $("#f-task").value, correct: $("#f-correct").value, split: $("#f-split").value });
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      location.href = href("/scenarios", { ...filters(), limit: limit === 50 ? null : limit });
    });
    for (const id of ["#f-task", "#f-correct", "#f-split"]) $(id).addEventListener("change", () => form.requestSubmit());

    const current = { ...filters(), limit, offset };
    const data = await api(href("/api/scenarios", current));
    const body = clear($("#table tbody"));
    for (const s of data.items) {
      const link = href("/scenario", { key: s.key });
      body.append(el("tr", null,
        el("td", null, el("a", { href: link, class: "mono", text: s.key })),
        el("td", { text: s.task }), el("td", { text: s.split }),
        el("td", { class: "path", title: s.path, text: s.path }),
        el("td", null, el("code", { text: shorten(visible(s.target), 40) })),
        el("td", null, el("code", { text: shorten(visible(s.completion), 40) })),
        el("td", null, mark(s.correct_first_token)), el("td", null, mark(s.correct_exact)),
        el("td", { class: "num", text: s.logprob_target_first == null ? "—" : prob(Math.exp(s.logprob_target_first)) })));
    }
    if (!data.items.length) body.append(el("tr", null, el("td", { colspan: 9, class: "hint", text: "No scenario matches." })));
    $("#count").textContent = data.total ? `${offset + 1}–${offset + data.items.length} of ${data.total} scenarios` : "0 scenarios";
    pager($("#pager"), offset, limit, data.total, (o) => href("/scenarios", { ...filters(), limit: limit === 50 ? null : limit, offset: o || null }));
    const name = `scenarios${current.task ? `-${current.task}` : ""}-${offset}`;
    $("#dl-csv").addEventListener("click", () => download(`${name}.csv`, csv(data.items, SCENARIO_COLUMNS), "text/csv"));
    $("#dl-json").addEventListener("click", () => download(`${name}.json`, JSON.stringify(data.items, null, 2), "application/json"));
  }

  // ---------------------------------------------------------------- Scenario

  async function scenarioPage() {
    const p = params();
    const key = p.get("key");
    if (!key) throw new Error("no scenario given: open one from the scenarios table (the link needs ?key=)");
    $("#crumb-key").textContent = key;
    const [s, run] = await Promise.all([api(`/api/scenarios/${enc(key)}`), api("/api/run")]);
    document.title = `${key} · ${document.title}`;
    $("#sc-title").textContent = `Scenario ${key}`;
    facts($("#sc-facts"), [
      ["task", s.task], ["file", el("span", { class: "path", text: s.path })], ["split", s.split],
      ["span", `characters ${s.start}–${s.end}`],
      ["target", el("code", { text: visible(s.target) })],
      ["completion", el("code", { text: visible(s.completion) })],
      ["first token", mark(s.correct_first_token)], ["exact", mark(s.correct_exact)],
      ["p(target's first token)", s.logprob_target_first == null ? "—" : prob(Math.exp(s.logprob_target_first))],
    ]);
    $("#sc-code").append(s.prefix == null ? el("p", { class: "hint", text: "The prompt's text is not available for this scenario." })
      : codeView(s.prefix, s.target, s.suffix));

    const labels = new Map(s.heads.map((h) => [`${h.layer}.${h.head}`, h.cluster]));
    const layers = run.layers ?? Math.max(0, ...s.heads.map((h) => h.layer + 1));
    const nheads = run.heads ?? Math.max(0, ...s.heads.map((h) => h.head + 1));
    const grid = headGrid(layers, nheads, (l, h) => {
      const label = labels.get(`${l}.${h}`);
      return el("button", { type: "button", class: "cell", title: `${headName(l, h)}: ${label == null ? "not clustered" : clusterName(label)}`, onclick: () => select(l, h) },
        thumb(scenarioThumb(key, l, h), headName(l, h)),
        el("span", { class: "cap", text: clusterName(label) }));
    });
    $("#sc-grid").append(grid);

    const detail = $("#head-detail");
    let shown = 0;
    async function select(l, h) {
      const mine = ++shown;
      setParams({ layer: l, head: h });
      for (const td of grid.querySelectorAll("td")) td.classList.toggle("selected", Number(td.dataset.layer) === l && Number(td.dataset.head) === h);
      const label = labels.get(`${l}.${h}`);
      $("#detail-title").textContent = `Head ${headName(l, h)} · ${clusterName(label)}`;
      const links = el("p", { class: "hint" }, el("a", { href: href("/head", { layer: l, head: h }), text: `open head ${headName(l, h)}` }));
      const plotBox = el("div");
      clear(detail).append(links, plotBox);
      const attBox = clear($("#att-code"));
      $("#att-panel").hidden = false;
      $("#att-title").textContent = `Attention on the code · head ${headName(l, h)}`;
      attBox.append(el("p", { class: "hint loading", text: "Loading the pattern…" }));
      fetchPattern(plotBox, scenarioPattern(key, l, h)).then((pattern) => {
        if (mine !== shown) return;
        if (!pattern) { clear(attBox).append(el("p", { class: "hint", text: "No pattern to show (see the error above)." })); return; }
        const code = attentionCode([{ label: key, pattern }], { hole: s.target });
        clear(plotBox).append(patternView(pattern, { filename: `pattern-${key}-L${l}-H${h}`, onPick: (q) => code.pin(q) }));
        clear(attBox).append(code);
      });
      if (label != null) {
        try {
          const info = await api(`/api/heads/${l}/${h}`);
          const c = info.clusters.find((x) => x.label === label);
          if (c) links.append(" · ", el("a", { href: href("/cluster", { id: c.id }), text: `open ${clusterName(label)} (${c.size} scenarios)` }));
        } catch (_e) { /* the head link is enough */ }
      }
    }
    const l0 = intParam(p, "layer"), h0 = intParam(p, "head");
    if (l0 != null && h0 != null && l0 >= 0 && h0 >= 0 && l0 < layers && h0 < nheads) select(l0, h0);
  }

  // ---------------------------------------------------------------- Try

  const EXAMPLE = `import java.util.HashMap;
import java.util.Map;

/** A small stock of items and their quantities. */
public class Inventory {
    private final Map<String, Integer> counts = new HashMap<>();

    public void add(String item, int quantity) {
        if (quantity <= 0) {
            throw new IllegalArgumentException("quantity must be positive");
        }
        counts.merge(item, quantity, Integer::sum);
    }

    public boolean remove(String item, int quantity) {
        Integer current = counts.get(item);
        if (current == null || current < quantity) {
            return false;
        }
        if (current == quantity) {
            counts.remove(item);
        } else {
            counts.put(item, current - quantity);
        }
        return true;
    }

    public int total() {
        int sum = 0;
        for (int value : counts.values()) {
            sum += value;
        }
        return sum;
    }
}
`;

  /** Longest code (UTF-8 bytes) kept in the link; longer code stays out of the URL. */
  const MAX_LINK_CODE_BYTES = 16 * 1024;

  function b64encode(str) {
    const bytes = new TextEncoder().encode(str);
    let bin = "";
    for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function b64decode(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    const bin = atob(s);
    return new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
  }

  // the server counts characters (code points); the textarea counts UTF-16 units
  const toPoints = (str, units) => Array.from(str.slice(0, units)).length;
  function toUnits(str, points) {
    let u = 0, c = 0;
    for (const ch of str) { if (c >= points) break; u += ch.length; c++; }
    return u;
  }
  const sliceByPoints = (str, a, b) => str.slice(toUnits(str, a), toUnits(str, b));

  async function tryPage() {
    const ta = $("#code"), taskSel = $("#task"), runBtn = $("#run"), rerunBtn = $("#rerun");
    const st = {
      span: null, cursor: null, heads: [], suggested: new Set(), ablate: new Set(), selected: null,
      result: null, request: null, intervention: null, which: "baseline", layers: 0, nheads: 0,
    };
    const modeInput = (m) => $(`input[name=mode][value=${m}]`);
    const mode = () => ($("input[name=mode]:checked") || modeInput("task")).value;
    const setMode = (m) => { modeInput(m).checked = true; };

    // --- state from the hash
    const hash = new URLSearchParams(location.hash.slice(1));
    let code = EXAMPLE, fromLink = false;
    if (hash.get("code")) {
      try { code = b64decode(hash.get("code")); fromLink = true; } catch (_e) { status("The link's code could not be decoded; showing the example instead."); }
    }
    ta.value = code;
    const run = await api("/api/run");
    const tasks = (run.tasks && run.tasks.length ? run.tasks : ["identifiers"]).filter((t) => t !== "noise");
    for (const t of tasks) taskSel.append(el("option", { value: t, text: t }));
    taskSel.value = tasks.includes(hash.get("task")) ? hash.get("task") : (tasks.includes("identifiers") ? "identifiers" : tasks[0]);
    if (hash.has("start") && hash.has("end")) {
      st.span = [parseInt(hash.get("start"), 10), parseInt(hash.get("end"), 10)];
      setMode("span");
    } else if (hash.has("cursor")) {
      st.cursor = parseInt(hash.get("cursor"), 10);
      setMode("cursor");
    } else {
      setMode("task");
    }
    for (const h of (hash.get("ablate") || "").split(",")) if (/^\d+\.\d+$/.test(h)) st.ablate.add(h);
    const sel = (hash.get("head") || "").match(/^(\d+)\.(\d+)$/);
    if (sel) st.selected = [parseInt(sel[1], 10), parseInt(sel[2], 10)];

    const suggest = $("#suggest");
    suggest.disabled = true;
    const suggestHint = $("#suggest-hint");
    api("/api/heads").then((heads) => {
      st.heads = heads;
      // suggested by causal effect: the head's single ablation raised train accuracy (interval above zero)
      const picked = heads.filter((h) => h.suggested_ablation).sort((a, b) => (b.causal_accuracy ?? 0) - (a.causal_accuracy ?? 0));
      picked.forEach((h) => st.suggested.add(`${h.layer}.${h.head}`));
      suggest.disabled = !st.suggested.size;
      suggest.title = st.suggested.size ? `tick the ${st.suggested.size} suggested head${st.suggested.size === 1 ? "" : "s"} (★)` : "no head is suggested for ablation in this run";
      clear(suggestHint);
      if (!heads.some((h) => h.causal_accuracy != null)) {
        suggestHint.append("No causal effects in this run yet (run `apmae sweep`), so the explorer suggests no head for ablation.");
      } else if (picked.length) {
        append(suggestHint, ["By causal effect (the head ablated alone on the train split, accuracy change in points with its 95% interval above zero), the explorer suggests ablating ",
          picked.map((h, i) => [i ? ", " : "", el("a", { href: href("/head", { layer: h.layer, head: h.head }), text: headName(h.layer, h.head) }),
            ` (${deltaCi(h.causal_accuracy, h.causal_accuracy_ci)} points)`]), "."]);
      } else {
        suggestHint.append("No head's single ablation raised train-split accuracy with its 95% interval above zero, so the explorer suggests none for ablation.");
      }
      if (st.result) renderGrid();
    }).catch(() => { suggest.title = "no head effects in this run"; });

    // --- selection and cursor
    const selInfo = $("#sel-info"), cursorInfo = $("#cursor-info");
    const describe = () => {
      const text = ta.value;
      if (st.span && st.span[1] <= Array.from(text).length) {
        selInfo.textContent = `characters ${st.span[0]}–${st.span[1]}: “${shorten(visible(sliceByPoints(text, st.span[0], st.span[1])), 40)}”`;
      } else {
        selInfo.textContent = "(select text above)";
      }
      if (st.cursor != null) {
        const before = sliceByPoints(text, 0, st.cursor).split("\n");
        cursorInfo.textContent = `(line ${before.length}, column ${before[before.length - 1].length + 1})`;
      } else {
        cursorInfo.textContent = "";
      }
    };
    const onSelect = () => {
      const text = ta.value, a = ta.selectionStart, b = ta.selectionEnd;
      if (b > a) {
        st.span = [toPoints(text, a), toPoints(text, b)];
        setMode("span");
      } else {
        st.cursor = toPoints(text, a);
      }
      describe();
    };
    for (const ev of ["select", "mouseup", "keyup"]) ta.addEventListener(ev, onSelect);
    ta.addEventListener("input", () => { st.span = null; describe(); });
    $("#example").addEventListener("click", () => { ta.value = EXAMPLE; st.span = null; st.cursor = null; setMode("task"); describe(); });
    describe();

    // --- running
    let timer = null;
    const busy = (on, what) => {
      runBtn.disabled = on;
      rerunBtn.disabled = on || !st.result || !st.ablate.size;
      const box = $("#progress");
      box.hidden = !on;
      clearInterval(timer);
      if (on) {
        const t0 = performance.now();
        const tick = () => { $("#progress-text").textContent = `${what}… ${((performance.now() - t0) / 1000).toFixed(1)} s`; };
        tick();
        timer = setInterval(tick, 100);
      }
    };

    const request = () => {
      const text = ta.value;
      const body = { code: text };
      const m = mode();
      if (m === "span") {
        if (!st.span || st.span[1] <= st.span[0]) throw new Error("select the span to mask in the code first (or pick a task)");
        body.start = st.span[0]; body.end = st.span[1];
      } else if (m === "cursor") {
        body.cursor = st.cursor ?? toPoints(text, ta.selectionStart);
      } else {
        body.task = taskSel.value;
      }
      if (!text.trim()) throw new Error("the code is empty");
      return body;
    };

    const writeHash = () => {
      const h = new URLSearchParams();
      const body = st.request;
      const bytes = new TextEncoder().encode(body ? body.code : ta.value).length;
      if (body && bytes <= MAX_LINK_CODE_BYTES) {
        h.set("code", b64encode(body.code));
        for (const k of ["task", "start", "end", "cursor"]) if (body[k] != null) h.set(k, body[k]);
        $("#link-note").textContent = "The page's link reproduces this run.";
      } else if (body) {
        $("#link-note").textContent = `The code is over ${MAX_LINK_CODE_BYTES / 1024} KB, too long to keep in the link.`;
      }
      if (st.ablate.size) h.set("ablate", [...st.ablate].join(","));
      if (st.selected) h.set("head", st.selected.join("."));
      history.replaceState(null, "", `${location.pathname}${location.search}${h.toString() ? `#${h}` : ""}`);
    };

    const resultBox = $("#result");
    async function runPredict() {
      let body;
      try { body = request(); } catch (e) { clear(resultBox).append(errorBox(e)); return; }
      busy(true, "Completing");
      try {
        const r = await post("/api/predict", body);
        st.result = r; st.request = body; st.intervention = null; st.which = "baseline";
        st.layers = Math.max(...r.heads.map((h) => h.layer)) + 1;
        st.nheads = Math.max(...r.heads.map((h) => h.head)) + 1;
        for (const k of [...st.ablate]) { const [l, h] = k.split(".").map(Number); if (l >= st.layers || h >= st.nheads) st.ablate.delete(k); }
        if (st.selected && (st.selected[0] >= st.layers || st.selected[1] >= st.nheads)) st.selected = null;
        renderResult();
        renderGrid();
        writeHash();
        if (st.selected) showHead(...st.selected);
      } catch (e) {
        clear(resultBox).append(errorBox(e, "The model could not run"));
      } finally {
        busy(false);
      }
    }

    async function runIntervene() {
      if (!st.request || !st.ablate.size) return;
      const ablate = [...st.ablate].map((k) => k.split(".").map(Number));
      busy(true, `Running with ${ablate.length} head${ablate.length === 1 ? "" : "s"} ablated`);
      try {
        const r = await post("/api/intervene", { ...st.request, ablate });
        st.intervention = r;
        renderResult();
        renderGrid();
        writeHash();
        if (st.selected) showHead(...st.selected);
      } catch (e) {
        $("#compare-box") ? clear($("#compare-box")).append(errorBox(e, "Ablation failed")) : resultBox.append(errorBox(e, "Ablation failed"));
      } finally {
        busy(false);
      }
    }

    runBtn.addEventListener("click", runPredict);
    rerunBtn.addEventListener("click", runIntervene);
    $("#suggest").addEventListener("click", () => { for (const k of st.suggested) st.ablate.add(k); syncChecks(); });
    $("#clear").addEventListener("click", () => { st.ablate.clear(); syncChecks(); });
    $("#grid-which").addEventListener("change", (ev) => { st.which = ev.target.value; renderGrid(); });

    function outcomeRows(o) {
      return [
        ["completion", el("code", { class: "completion-text", text: visible(o.completion) || "(nothing)" })],
        ["first token right", mark(o.correct_first_token, "no ground truth")],
        ["exactly right", mark(o.correct_exact, "no ground truth")],
        ["p(target's first token)", o.target_first_prob == null ? "—" : prob(o.target_first_prob)],
        ["predicted correct", predictedCell(o)],
        ["model's confidence", confidenceCell(o)],
      ];
    }

    // The attention-only prediction, or why there is none (no predictor; input unlike training)
    function predictedCell(o) {
      if (o.out_of_distribution && o.out_of_distribution.length) {
        return el("span", { class: "ood" }, "— withheld: ", o.out_of_distribution.join("; "));
      }
      return o.predicted_correct == null ? "— (no predictor)" : probability(o.predicted_correct);
    }

    function confidenceCell(o) {
      const c = o.lm_confidence;
      if (!c) return "—";
      const baseline = c.predicted_correct == null ? "" : ` → ${pct(c.predicted_correct)} right`;
      return `top-1 ${pct(c.top1_prob)}, entropy ${c.entropy.toFixed(2)} nats${baseline} (from the output, not attention)`;
    }

    function predictorNote(p) {
      if (!p) return null;
      const conf = p.lm_confidence_heldout_auc == null ? "" :
        `; the model's own confidence: ${p.lm_confidence_heldout_auc.toFixed(2)}${interval(p.lm_confidence_heldout_auc_ci)}`;
      return `${p.name}, reading the span as ${p.task}: held-out AUC ${p.heldout_auc == null ? "—" : p.heldout_auc.toFixed(2)}${interval(p.heldout_auc_ci)}, ` +
        `within task ${p.within_task_auc == null ? "—" : p.within_task_auc.toFixed(2)}${interval(p.within_task_auc_ci)}${conf}`;
    }

    function probability(v) {
      return el("span", { class: "prob" }, el("span", { class: "bar" }, el("span", { class: "fill", style: `width:${(100 * v).toFixed(1)}%` })), ` ${pct(v)}`);
    }

    function renderResult() {
      const r = st.result;
      const code = st.request.code;
      const dl = el("dl", { class: "facts" });
      facts(dl, [
        ["span", r.task ? `task ${r.task}, characters ${r.start}–${r.end}` : r.target == null ? `open completion at character ${r.start}` : `characters ${r.start}–${r.end}`],
        ["target", r.target == null ? "— (open completion)" : el("code", { text: visible(r.target) })],
        ...outcomeRows(r),
        ["predictor", predictorNote(r.predictor)],
        ["prompt", `${r.window} tokens${r.approximate ? " — shorter than the run's window, so clusters come from resized patterns (approximate)" : ""}`],
        ["missing", r.missing && r.missing.length ? r.missing.join(", ") : null],
      ]);
      const pre = sliceByPoints(code, 0, r.start), tgt = sliceByPoints(code, r.start, r.end), suf = sliceByPoints(code, r.end, Array.from(code).length);
      clear(resultBox).append(dl, codeView(pre, tgt, suf, { context: 3 }));
      if (st.intervention) resultBox.append(compareView(st.intervention));
      $("#heads-panel").hidden = false;
      $("#grid-which-label").hidden = !st.intervention;
      $("#grid-which").value = st.which;
    }

    function compareView(iv) {
      const rows = [["completion", (o) => el("code", { class: "completion-text", text: visible(o.completion) || "(nothing)" })],
        ["first token right", (o) => mark(o.correct_first_token, "no ground truth")],
        ["exactly right", (o) => mark(o.correct_exact, "no ground truth")],
        ["p(target's first token)", (o) => (o.target_first_prob == null ? "—" : prob(o.target_first_prob))],
        ["predicted correct", predictedCell],
        ["model's confidence", confidenceCell]];
      const table = el("table", { class: "data compare", id: "compare" },
        el("thead", null, el("tr", null, el("th"), el("th", { text: "baseline" }), el("th", { text: `${iv.ablate.length} head${iv.ablate.length === 1 ? "" : "s"} ablated` }))),
        el("tbody", null, rows.map(([name, f]) => el("tr", null, el("th", { scope: "row", text: name }), el("td", null, f(iv.baseline)), el("td", null, f(iv.ablated))))));
      const changed = iv.ablated.changed_heads || [];
      const note = el("p", { class: "hint" }, `Ablated: ${iv.ablate.map(([l, h]) => headName(l, h)).join(", ")}. `,
        changed.length ? `Cluster changed in ${changed.length} head${changed.length === 1 ? "" : "s"}: ${changed.map((c) => `${headName(c.layer, c.head)} ${clusterName(c.before)}→${clusterName(c.after)}`).join(", ")}.`
          : "No head changed cluster.");
      return el("div", { id: "compare-box" }, el("h3", { text: "Before and after ablation" }), table, note);
    }

    function syncChecks() {
      for (const box of document.querySelectorAll("#try-grid input[type=checkbox]")) box.checked = st.ablate.has(box.dataset.head);
      rerunBtn.disabled = !st.result || !st.ablate.size;
      rerunBtn.textContent = st.ablate.size ? `Rerun with ${st.ablate.size} head${st.ablate.size === 1 ? "" : "s"} ablated` : "Rerun with ablation";
      if (st.request) writeHash();
    }

    function renderGrid() {
      const r = st.intervention || st.result;
      if (!r) return;
      const byKey = new Map(r.heads.map((h) => [`${h.layer}.${h.head}`, h]));
      const changed = new Set(((st.intervention && st.intervention.ablated.changed_heads) || []).map((c) => `${c.layer}.${c.head}`));
      const ablated = new Set(((st.intervention && st.intervention.ablate) || []).map(([l, h]) => `${l}.${h}`));
      const which = st.intervention && st.which === "ablated" ? "ablated" : "baseline";
      const grid = headGrid(st.layers, st.nheads, (l, h) => {
        const k = `${l}.${h}`, entry = byKey.get(k);
        if (!entry) return null;
        const src = which === "ablated" ? `${entry.thumb_url}?which=ablated` : entry.thumb_url;
        const box = el("input", { type: "checkbox", dataset: { head: k }, "aria-label": `ablate ${headName(l, h)}` });
        box.checked = st.ablate.has(k);
        box.addEventListener("change", () => { if (box.checked) st.ablate.add(k); else st.ablate.delete(k); syncChecks(); });
        return [
          el("button", { type: "button", class: "cell", title: `${headName(l, h)}: ${clusterName(entry.cluster)}`, onclick: () => showHead(l, h) },
            thumb(src, headName(l, h))),
          el("label", { class: "cap" }, box, ` ${clusterName(entry.cluster)}`,
            st.suggested.has(k) ? el("span", { class: "badge star", title: "suggested for ablation: its single ablation raised train-split accuracy", text: "★" }) : null),
        ];
      });
      for (const td of grid.querySelectorAll("td")) {
        const k = `${td.dataset.layer}.${td.dataset.head}`;
        td.classList.toggle("changed", changed.has(k));
        td.classList.toggle("ablated", ablated.has(k));
        td.classList.toggle("selected", !!st.selected && k === st.selected.join("."));
      }
      clear($("#try-grid")).append(grid);
      syncChecks();
    }

    async function showHead(l, h) {
      const r = st.intervention || st.result;
      const entry = r && r.heads.find((x) => x.layer === l && x.head === h);
      if (!entry) return;
      st.selected = [l, h];
      writeHash();
      for (const td of document.querySelectorAll("#try-grid td")) td.classList.toggle("selected", Number(td.dataset.layer) === l && Number(td.dataset.head) === h);
      const panel = $("#head-panel");
      panel.hidden = false;
      $("#head-panel-title").textContent = `Head ${headName(l, h)} · ${clusterName(entry.cluster)}`;
      const body = clear($("#head-panel-body"));
      const plots = el("div", { class: st.intervention ? "cols two" : "cols pattern-and-exemplars" });
      const base = el("div", null, el("h3", { text: st.intervention ? "baseline" : "this prompt" }), el("div"));
      plots.append(base);
      const attBox = el("div", { class: "att-box" }, el("h3", { text: `Attention on the code · ${headName(l, h)}` }), el("p", { class: "hint", text: ATT_HINT }),
        el("p", { class: "hint loading", text: "Loading the pattern…" }));
      const loads = [fetchPattern(base.lastChild, entry.pattern_url)];
      if (st.intervention) {
        const changedHead = (st.intervention.ablated.changed_heads || []).find((c) => c.layer === l && c.head === h);
        const wasAblated = st.intervention.ablate.some(([a, b]) => a === l && b === h);
        const after = el("div", null, el("h3", { text: `ablated run${wasAblated ? " (this head is switched off)" : ""}${changedHead ? ` — cluster ${clusterName(changedHead.before)}→${clusterName(changedHead.after)}` : ""}` }), el("div"));
        plots.append(after);
        loads.push(fetchPattern(after.lastChild, `${entry.pattern_url}?which=ablated`));
      }
      const boxes = [...plots.children].map((c) => c.lastChild);
      const target = st.result.target;
      Promise.all(loads).then((patterns) => {
        if (!plots.isConnected) return;  // another head (or run) was shown meanwhile
        const sources = patterns.map((pattern, i) => ({ label: i ? "ablated run" : "baseline", pattern })).filter((x) => x.pattern);
        const code = sources.length ? attentionCode(sources, { hole: target }) : null;
        patterns.forEach((pattern, i) => {
          if (pattern) clear(boxes[i]).append(patternView(pattern, { filename: `try-L${l}-H${h}${i ? "-ablated" : ""}`, onPick: (q) => code.pin(q) }));
        });
        attBox.lastChild.replaceWith(code || el("p", { class: "hint", text: "No pattern to show." }));
      });
      const exemplars = el("div", { class: "exemplars" }, el("h3", { text: `Exemplars of ${clusterName(entry.cluster)}` }), el("p", { class: "hint", text: "Loading…" }));
      body.append(plots, attBox, exemplars);
      panel.scrollIntoView({ behavior: "smooth", block: "nearest" });
      if (entry.cluster == null) { exemplars.lastChild.textContent = "This run has no clusters to compare with."; return; }
      if (entry.cluster < 0) { exemplars.lastChild.textContent = "This pattern is noise: it lies near none of the head's clusters, so there are no exemplars to compare with."; return; }
      try {
        const info = await api(`/api/heads/${l}/${h}`);
        const c = info.clusters.find((x) => x.label === entry.cluster);
        if (!c) { exemplars.lastChild.textContent = "No stored cluster with this label."; return; }
        const strip = el("div", { class: "thumbs" }, (c.exemplars || []).map((key) =>
          el("a", { class: "thumb-button", href: href("/scenario", { key, layer: l, head: h }), title: `exemplar ${key}` },
            thumb(scenarioThumb(key, l, h), `exemplar ${key}`), el("span", { class: "cap", text: key }))));
        exemplars.replaceChildren(el("h3", null, `Exemplars of ${clusterName(entry.cluster)} (`,
          el("a", { href: href("/cluster", { id: c.id }), text: `${c.size} scenarios` }), ")"), strip);
      } catch (e) {
        exemplars.lastChild.replaceWith(errorBox(e, "Exemplars"));
      }
    }

    // a link with code reproduces its run (and its ablation)
    if (fromLink && (hash.has("task") || hash.has("start") || hash.has("cursor"))) {
      await runPredict();
      if (st.result && st.ablate.size) await runIntervene();
    }
    syncChecks();
  }

  // ---------------------------------------------------------------- Sweep

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

  // ---------------------------------------------------------------- start

  const PAGES = { overview, head: headPage, cluster: clusterPage, scenarios: scenariosPage, scenario: scenarioPage, try: tryPage, sweep: sweepPage };

  async function start() {
    const page = document.body.dataset.page;
    const init = PAGES[page];
    if (!init) return;
    if (page !== "scenarios" && typeof Plotly === "undefined") {
      status("plotly.js did not load (/static/plotly.min.js): charts cannot be drawn.");
      return;
    }
    document.body.classList.add("loading");
    try {
      await init();
    } catch (e) {
      status(e && e.message ? e.message : String(e));
    } finally {
      document.body.classList.remove("loading");
      document.body.dataset.ready = "1";
    }
  }

  // exposed for tests and the console
  window.apmae = { el, plotText, visible, markdown, b64encode, b64decode };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
