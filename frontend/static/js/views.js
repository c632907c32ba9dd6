/* Views that several pages share: code with its masked span, the layer × head grid,
 * thumbnails, facts lists, task mixes, verdict badges and the pager. */
import { clear, el, enc } from "./dom.js";
import { pct } from "./format.js";

export function codeView(prefix, target, suffix, { context = null, label = "masked span" } = {}) {
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
export function headGrid(layers, heads, cell) {
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

/** Thumbnails ask for their image only once they come near the viewport, so that a grid
 * of hundreds of heads requests what can be seen and more as it scrolls (the browser's own
 * ``loading="lazy"`` loads everything within thousands of pixels). */
const nearView = new IntersectionObserver((entries) => {
  for (const e of entries) {
    if (!e.isIntersecting) continue;
    nearView.unobserve(e.target);
    e.target.src = e.target.dataset.src;
  }
}, { rootMargin: "150px" });

export function thumb(src, alt) {
  const img = el("img", { alt, width: 64, height: 64, decoding: "async", dataset: { src } });
  img.addEventListener("error", () => { img.classList.add("broken"); img.alt = `${alt} (unavailable)`; });
  nearView.observe(img);
  return img;
}

export const scenarioThumb = (key, l, h) => `/api/scenarios/${enc(key)}/heads/${l}/${h}/thumb.png`;
export const scenarioPattern = (key, l, h) => `/api/scenarios/${enc(key)}/heads/${l}/${h}/pattern`;

export function facts(dl, rows) {
  clear(dl);
  for (const [k, v] of rows) {
    if (v == null) continue;
    dl.append(el("dt", { text: k }), el("dd", null, v));
  }
}

/** A one-line mix of tasks: the largest ones, then how many more. */
export function taskMix(byTask, top = 3) {
  const entries = Object.entries(byTask || {}).sort((a, b) => b[1] - a[1]);
  const shown = entries.slice(0, top).map(([t, n]) => `${t} ${n}`);
  if (entries.length > top) shown.push(`+${entries.length - top} more`);
  return shown.join(", ");
}

export function correctBar(byCorrect) {
  const c = (byCorrect && byCorrect.correct) || 0, i = (byCorrect && byCorrect.incorrect) || 0;
  const share = c + i ? c / (c + i) : 0;
  return el("div", { class: "mix", title: `${c} correct, ${i} incorrect (first token)` },
    el("div", { class: "bar" }, el("span", { class: "fill", style: `width:${(100 * share).toFixed(1)}%` })),
    el("span", { class: "hint", text: `${pct(share, 0)} correct (${c}/${c + i})` }));
}

export function pager(box, offset, limit, total, link) {
  clear(box);
  const prev = offset > 0 ? el("a", { href: link(Math.max(0, offset - limit)), text: "← previous", rel: "prev" }) : el("span", { class: "muted", text: "← previous" });
  const next = offset + limit < total ? el("a", { href: link(offset + limit), text: "next →", rel: "next" }) : el("span", { class: "muted", text: "next →" });
  box.append(prev, next);
}

export function mark(ok, none = "—") {
  if (ok == null) return el("span", { class: "badge muted", text: none });
  return ok ? el("span", { class: "badge ok", text: "✓ right" }) : el("span", { class: "badge bad", text: "✗ wrong" });
}
