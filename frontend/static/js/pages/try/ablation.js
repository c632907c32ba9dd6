/* /try's head grid: a thumbnail per head of the run, ticks that choose the heads to switch off,
 * the heads the run suggests (by causal effect), and after an ablation which heads were off and
 * which changed cluster; then what the ablation did: the next-token distribution before and
 * after, the target's log-probability change, and the heads' patterns before, after and their
 * difference. */
import { $, append, clear, el, href } from "../../dom.js";
import { api } from "../../api.js";
import { clusterName, deltaCi, headName, num, visible } from "../../format.js";
import { fetchPattern, patternView } from "../../heatmap.js";
import { isControl } from "../../tokens.js";
import { headGrid, thumb } from "../../views.js";

/** Wire the grid's controls to ``st``; ``run`` (/api/run) says whether the run has causal
 * effects to suggest heads by; ``writeHash()`` keeps the link current and ``showHead(l, h)``
 * opens a head. Returns ``renderGrid()`` and ``syncChecks()``. */
export function ablationGrid(st, run, { writeHash, showHead }) {
  const rerunBtn = $("#rerun"), suggest = $("#suggest"), suggestHint = $("#suggest-hint");

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
    explainAblation(st);
  }

  suggest.disabled = true;
  // the sweep measures the causal effects; without one, /api/heads is not asked (it may 404)
  const asked = run.report && run.report.sweep ? api("/api/heads") : Promise.resolve([]);
  asked.then((heads) => {
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

  suggest.addEventListener("click", () => { for (const k of st.suggested) st.ablate.add(k); syncChecks(); });
  $("#clear").addEventListener("click", () => { st.ablate.clear(); syncChecks(); });
  $("#grid-which").addEventListener("change", (ev) => { st.which = ev.target.value; renderGrid(); });
  return { renderGrid, syncChecks };
}

/** Heads listed for their patterns besides the ablated ones: those whose attention moved most. */
const MOVED = 5;

const tokenText = (t) => (isControl(t) ? t : `"${visible(t)}"`);
/** A probability or log-probability to 3 significant digits, with a real minus sign. */
const sig = (v, plus = false) => (v == null ? "—" : `${v < 0 ? "−" : plus ? "+" : ""}${Math.abs(v).toPrecision(3)}`);

/** What ``st.intervention`` did, once per ablation: the target's log-probability change and the
 * top-k under the before/after table (#compare-box), the heads' patterns in a full-width panel
 * after the grid. */
function explainAblation(st) {
  const iv = st.intervention, host = $("#compare-box");
  let panel = $("#ablation-patterns");
  if (!iv) { if (panel) panel.hidden = true; return; }
  if (!host || host.querySelector("#ablation-explain")) return;
  const b = iv.baseline, a = iv.ablated;
  host.append(el("div", { id: "ablation-explain" },
    el("p", { class: "verdict", id: "logprob-change" }, iv.target == null
      ? "An open completion has no target, so no log-probability change."
      : ["Target ", el("code", { text: tokenText(iv.target) }), `: its first token's log-probability ${sig(b.target_first_logprob)} → ${sig(a.target_first_logprob)} `,
        el("b", { text: `(${sig(iv.target_logprob_change, true)} nats)` }), `; p ${sig(b.target_first_prob)} → ${sig(a.target_first_prob)}.`]),
    el("h4", { text: "Most probable next tokens" }), topK(b.top_k, a.top_k)));

  if (!panel) {
    panel = el("section", { class: "panel", id: "ablation-patterns" });
    $("#heads-panel").after(panel);
  }
  const heads = iv.heads.filter((h) => h.ablated);
  const moved = iv.heads.filter((h) => !h.ablated && h.pattern_change > 0)
    .sort((x, y) => y.pattern_change - x.pattern_change).slice(0, MOVED);
  panel.hidden = false;
  append(clear(panel), [el("h2", { text: "Patterns before and after the ablation" }),
    el("p", { class: "hint", text: "Open a head for its baseline and ablated patterns side by side and their difference (red: attends more after the ablation; blue: less). "
      + "“moved”: the mean over query rows of the total variation distance between the two rows (0 unchanged, 1 disjoint)." }),
    heads.map((h) => headPatterns(h, "switched off")),
    moved.length ? [el("p", { class: "hint", text: `The ${moved.length === 1 ? "head" : `${moved.length} heads`} whose attention moved most:` }),
      moved.map((h) => headPatterns(h, null))] : el("p", { class: "hint", text: "No other head's attention moved." })]);
}

/** The baseline's and the ablated run's top-k side by side, with where each token ranked before. */
function topK(before, after) {
  const rankBefore = new Map(before.map((t, i) => [t.token_id, i]));
  const rows = Array.from({ length: Math.max(before.length, after.length) }, (_, i) => {
    const x = before[i], y = after[i];
    const was = y ? rankBefore.get(y.token_id) : undefined;
    const move = !y ? "" : was === undefined ? "new" : was === i ? "=" : `was #${was + 1}`;
    return el("tr", null, el("td", { class: "num", text: i + 1 }),
      el("td", null, x ? el("code", { text: tokenText(x.token) }) : ""), el("td", { class: "num", text: x ? sig(x.prob) : "" }),
      el("td", null, y ? el("code", { text: tokenText(y.token) }) : ""), el("td", { class: "num", text: y ? sig(y.prob) : "" }),
      el("td", { class: "hint", text: move }));
  });
  return el("table", { class: "data compact", id: "topk" },
    el("thead", null, el("tr", null, ["#", "baseline", "p", "ablated", "p", "rank before"].map((t, i) => el("th", { class: i === 2 || i === 4 ? "num" : null, text: t })))),
    el("tbody", null, rows));
}

/** A head's baseline, ablated and difference patterns, fetched when it is first opened. */
function headPatterns(h, note) {
  const name = headName(h.layer, h.head);
  const details = el("details", { class: "ablated-head", dataset: { head: `${h.layer}.${h.head}` } },
    el("summary", null, el("b", { text: name }), note ? ` (${note})` : "", ` · moved ${num(h.pattern_change, 3)}`));
  details.addEventListener("toggle", () => {
    if (!details.open || details.children.length > 1) return;
    const sides = [["baseline", h.pattern_url], ["ablated run", h.ablated_pattern_url], ["difference (ablated − baseline)", h.difference_pattern_url]]
      .map(([title, url]) => ({ title, url, box: el("div") }));
    details.append(el("div", { class: "cols three" }, sides.map((x) => el("div", null, el("h5", { text: x.title }), x.box))));
    for (const x of sides) {
      fetchPattern(x.box, x.url).then((pattern) => {
        if (pattern) clear(x.box).append(patternView(pattern, { small: true, filename: `try-${name.replace(" ", "")}-${x.title.split(" ")[0]}` }));
      });
    }
  });
  return details;
}
