/* Attention on the code: the prompt laid out as its text, each token shaded by a head's
 * attention (used on the cluster, scenario and /try pages). */
import { append, clear, el, errorBox } from "./dom.js";
import { api } from "./api.js";
import { pct } from "./format.js";
import { patternView } from "./heatmap.js";
import { isControl, promptParts, tokenName } from "./tokens.js";

/** How to read the view; ``heatmap``: whether a heatmap beside it pins a query on click. */
export const attHint = (heatmap = true) => "Shaded by what the predicting position attends to. Hover a token for what it attends to, click to pin it" +
  `${heatmap ? " (or click a heatmap cell to pin its query)" : ""}; “attention of” switches to the mean of the head's layer.`;

/** The mean of patterns of one prompt, weight by weight: what a layer's heads attend to on
 * average (log10 weights again, the lowest floor where every head is at its floor). */
export function meanPattern(patterns) {
  const n = patterns.length, floor = Math.min(...patterns.map((p) => p.floor));
  const z = patterns[0].z.map((row, q) => row.map((v0, k) => {
    if (v0 == null) return null;
    let sum = 0;
    for (const p of patterns) sum += p.z[q][k] == null ? 0 : 10 ** p.z[q][k];
    return sum > 0 ? Math.max(floor, Math.log10(sum / n)) : floor;
  }));
  return { ...patterns[0], head: null, z, floor };
}

/** The ``layer`` option of attentionCode: every head of layer ``l`` by its pattern URL. */
export const layerMean = (l, urls) => ({ label: `the mean of layer L${l}'s ${urls.length} heads`, urls });

/** The prompt laid out as its code, one span per token, each shaded by a head's attention:
 * by default what the predicting position attends to (its row). Hovering a token shows its
 * row, clicking pins it, and a toggle shows its column instead (what attends to it).
 * ``sources``: [{label, pattern, layer}] of the same prompt (a select switches between them);
 * ``layer``, when given: {label, urls}, the pattern URLs of every head of the pattern's layer,
 * fetched (one request per head) and averaged when the reader asks for the layer's mean.
 * ``hole``: the masked span's text, shown where it was cut out (it is not in the prompt);
 * ``onPin(i, column)``: the pinned token (null: none) and whether its column is shown, on every
 * change (e.g. to outline it in a heatmap). The returned element's ``pin(i)`` pins token ``i``
 * (e.g. from a heatmap click). */
export function attentionCode(sources, { hole = null, onPin = null } = {}) {
  const first = sources[0].pattern;
  if (!first.tokens || first.tokens.length !== first.z.length) {
    return Object.assign(el("p", { class: "hint", text: "The prompt's tokens are not available, so its attention cannot be shown on the code." }), { pin: () => {} });
  }
  const tokens = first.tokens;
  const T = tokens.length;
  const parts = promptParts(tokens);
  const control = tokens.map(isControl);
  const st = { source: 0, layer: false, column: false, scale: "linear", pinned: null, hover: null };
  const means = new Map();  // source index -> its layer's mean pattern (a promise)
  const box = el("figure", { class: "attcode" });

  const which = sources.length > 1 ? el("select", { class: "att-source", "aria-label": "which run" },
    sources.map((s, i) => el("option", { value: i, text: s.label }))) : null;
  const layer = sources[0].layer;
  const over = layer ? el("select", { class: "att-over", "aria-label": "whose attention" },
    el("option", { value: "head", text: "this head" }), el("option", { value: "layer", text: layer.label })) : null;
  const column = el("input", { type: "checkbox", class: "att-column" });
  const scale = el("select", { class: "att-scale", "aria-label": "shading" },
    el("option", { value: "linear", text: "linear" }), el("option", { value: "log", text: "log (3 decades)" }));
  const back = el("button", { type: "button", class: "link att-back", text: "back to the predicting position", hidden: true });
  const controls = el("div", { class: "att-controls" },
    which ? el("label", null, "run ", which) : null,
    over ? el("label", { title: "one head's attention, or the mean over every head of its layer" }, "attention of ", over) : null,
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

  let shown = first;  // the pattern drawn: the chosen source's, or its layer's mean
  let told = [null, false];  // what onPin last heard
  const render = () => {
    if (onPin && (told[0] !== st.pinned || told[1] !== st.column)) {
      told = [st.pinned, st.column];
      onPin(st.pinned, st.column);
    }
    const q = st.hover ?? st.pinned ?? parts.predicting;
    const z = shown.z;
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
    append(clear(readout), [st.layer ? `${layer.label}: ` : "", el("code", { text: tokenName(tokens, q, 40) }),
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

  /** Draw the chosen source, or its layer's mean (fetched once per source, head by head). */
  const choose = async () => {
    const i = st.source, src = sources[i];
    if (!st.layer || !src.layer) { shown = src.pattern; render(); return; }
    if (!means.has(i)) means.set(i, Promise.all(src.layer.urls.map((u) => api(u))).then(meanPattern));
    over.disabled = true;
    clear(readout).append(`Loading the ${src.layer.urls.length} patterns of the layer…`);
    try {
      const mean = await means.get(i);
      if (i === st.source && st.layer) shown = mean;
      render();
    } catch (e) {
      means.delete(i);
      st.layer = false; over.value = "head"; shown = src.pattern;
      render();
      readout.prepend(errorBox(e, "The layer's patterns"));
    } finally {
      over.disabled = false;
    }
  };
  if (which) which.addEventListener("change", () => { st.source = Number(which.value); choose(); });
  if (over) over.addEventListener("change", () => { st.layer = over.value === "layer"; choose(); });
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

/** A heatmap per source and one attention-on-the-code view over them, linked both ways: a click
 * on a heatmap cell pins its query in the code, and the token pinned in the code is outlined in
 * every heatmap. ``sources``: attentionCode's, each with the ``filename`` of its PNG export. */
export function linkedViews(sources, { hole = null } = {}) {
  const heatmaps = [];
  const code = attentionCode(sources, { hole, onPin: (i, column) => heatmaps.forEach((v) => v.mark(i, column)) });
  for (const s of sources) heatmaps.push(patternView(s.pattern, { filename: s.filename, onPick: (q) => code.pin(q) }));
  return { code, heatmaps };
}
