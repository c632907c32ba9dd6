/* /try's head grid: a thumbnail per head of the run, ticks that choose the heads to switch off,
 * the heads the run suggests (by causal effect), and after an ablation which heads were off and
 * which changed cluster. */
import { $, append, clear, el, href } from "../../dom.js";
import { api } from "../../api.js";
import { clusterName, deltaCi, headName } from "../../format.js";
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
