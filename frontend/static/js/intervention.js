/* The selective intervention's table and verdict (overview and sweep pages). */
import { clear, el } from "./dom.js";
import { delta, deltaCi, interval, pct } from "./format.js";

export const METHODS = {
  shap: "heads with the most negative SHAP over wrong completions (the paper's selection)",
  causal: "heads whose single ablation raised train accuracy most",
  greedy: "forward selection on the train split",
  conditional: "a head ablated only for inputs whose pattern at that head falls in a failure-enriched cluster",
};
export const methodOrder = (names) => [...Object.keys(METHODS).filter((m) => names.includes(m)), ...names.filter((m) => !(m in METHODS) && m !== "random")];
export const sizeOrder = (sizes) => Object.keys(sizes || {}).sort((a, b) => Number(a) - Number(b));

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
export function interventionView(box, iv) {
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
