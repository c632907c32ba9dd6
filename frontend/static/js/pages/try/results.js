/* /try's result: the completion and its verdicts, the predictors' view of it, and after an
 * ablation the baseline and ablated runs side by side. */
import { $, clear, el } from "../../dom.js";
import { clusterName, headName, interval, pct, prob, visible } from "../../format.js";
import { codeView, facts, mark } from "../../views.js";
import { sliceByPoints } from "./form.js";

/** The attention-only prediction, or why there is none (no predictor; input unlike training). */
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

/** One run's outcome, row by row: [name, cell of an outcome]. */
const OUTCOME = [
  ["completion", (o) => el("code", { class: "completion-text", text: visible(o.completion) || "(nothing)" })],
  ["first token right", (o) => mark(o.correct_first_token, "no ground truth")],
  ["exactly right", (o) => mark(o.correct_exact, "no ground truth")],
  ["p(target's first token)", (o) => (o.target_first_prob == null ? "—" : prob(o.target_first_prob))],
  ["predicted correct", predictedCell],
  ["model's confidence", confidenceCell],
];

/** The result of ``st.result`` (and ``st.intervention``'s comparison) into #result. */
export function renderResult(st) {
  const r = st.result;
  const code = st.request.code;
  const dl = el("dl", { class: "facts" });
  facts(dl, [
    ["span", r.task ? `task ${r.task}, characters ${r.start}–${r.end}` : r.target == null ? `open completion at character ${r.start}` : `characters ${r.start}–${r.end}`],
    ["target", r.target == null ? "— (open completion)" : el("code", { text: visible(r.target) })],
    ...OUTCOME.map(([name, f]) => [name, f(r)]),
    ["predictor", predictorNote(r.predictor)],
    ["prompt", `${r.window} tokens${r.approximate ? " — shorter than the run's window, so clusters come from resized patterns (approximate)" : ""}`],
    ["missing", r.missing && r.missing.length ? r.missing.join(", ") : null],
  ]);
  const pre = sliceByPoints(code, 0, r.start), tgt = sliceByPoints(code, r.start, r.end), suf = sliceByPoints(code, r.end, Array.from(code).length);
  clear($("#result")).append(dl, codeView(pre, tgt, suf, { context: 3 }));
  if (st.intervention) $("#result").append(compareView(st.intervention));
  $("#heads-panel").hidden = false;
  $("#grid-which-label").hidden = !st.intervention;
  $("#grid-which").value = st.which;
}

function compareView(iv) {
  const table = el("table", { class: "data compare", id: "compare" },
    el("thead", null, el("tr", null, el("th"), el("th", { text: "baseline" }), el("th", { text: `${iv.ablate.length} head${iv.ablate.length === 1 ? "" : "s"} ablated` }))),
    el("tbody", null, OUTCOME.map(([name, f]) => el("tr", null, el("th", { scope: "row", text: name }), el("td", null, f(iv.baseline)), el("td", null, f(iv.ablated))))));
  const changed = iv.ablated.changed_heads || [];
  const note = el("p", { class: "hint" }, `Ablated: ${iv.ablate.map(([l, h]) => headName(l, h)).join(", ")}. `,
    changed.length ? `Cluster changed in ${changed.length} head${changed.length === 1 ? "" : "s"}: ${changed.map((c) => `${headName(c.layer, c.head)} ${clusterName(c.before)}→${clusterName(c.after)}`).join(", ")}.`
      : "No head changed cluster.");
  return el("div", { id: "compare-box" }, el("h3", { text: "Before and after ablation" }), table, note);
}
