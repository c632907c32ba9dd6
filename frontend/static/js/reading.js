/* What sets a cluster apart, as tables: its pattern metrics beside its head's, and its
 * enrichment (task and correctness shares against the head's base rates). Head and cluster pages. */
import { el } from "./dom.js";
import { num, pct } from "./format.js";

/** The metrics apmae.atlas.describe computes: [field, short name, long name, format]. */
const METRICS = [
  ["sink", "sink", "weight on the first token", (v) => pct(v, 0)],
  ["previous", "prev", "weight on the previous token", (v) => pct(v, 0)],
  ["self", "self", "weight on itself (the diagonal)", (v) => pct(v, 0)],
  ["local", "local", "weight on the 8 most recent keys, itself included", (v) => pct(v, 0)],
  ["induction", "induct", "weight on keys whose preceding token is the query's token (copy/induction-like)", (v) => pct(v, 0)],
  ["distance", "dist", "mean query − key distance, tokens", (v) => num(v, 1)],
  ["entropy", "H", "row entropy, nats", (v) => num(v, 2)],
];

/** A compact table of pattern metrics: one column per metric, one row per ``[name, metrics]``
 * (metrics: a MetricsOut, or null when not computed). */
export function metricsTable(rows, { id } = {}) {
  const head = el("tr", null, el("th"), METRICS.map(([, short, long]) => el("th", { class: "num", title: long, text: short })),
    el("th", { class: "num", title: "patterns the means rest on", text: "n" }));
  const body = el("tbody", null, rows.map(([name, m]) => el("tr", null, el("th", { scope: "row", text: name }),
    METRICS.map(([key, , long, f]) => el("td", { class: "num", title: long, text: m ? f(m[key]) : "—" })),
    el("td", { class: "num", text: m ? m.n : "—" }))));
  return el("table", { class: "data compact metrics", id }, el("thead", null, head), body);
}

/** The significance mark of an enrichment test, with its q value and direction on hover. */
function markCell(t) {
  const title = `q = ${t.q.toPrecision(2)} (p = ${t.p.toPrecision(2)}, Benjamini-Hochberg over the head's tests); ${t.direction} the head's rate`;
  return el("td", { class: `mark ${t.mark ? t.direction : ""}`, title, text: t.mark || "–" });
}

const lift = (t) => (t.lift == null ? "—" : `×${num(t.lift, 2)}`);

/** Rows of enrichment: the correctness row first, then the tasks (significant, then largest count first; ``top``
 * of them, the rest counted in a last line). */
export function enrichmentTable(enr, { top = null, id } = {}) {
  const tasks = Object.entries(enr.tasks || {})
    .sort((a, b) => b[1].mark.length - a[1].mark.length || b[1].count - a[1].count || a[0].localeCompare(b[0]));
  const shown = top == null ? tasks : tasks.slice(0, top);
  const row = (name, t, cls) => el("tr", { class: cls }, el("th", { scope: "row", text: name }),
    el("td", { class: "num", title: "members of the cluster in this category", text: t.count }),
    el("td", { class: "num", title: "share of the cluster", text: pct(t.share, 0) }),
    el("td", { class: "num", title: "share in the whole head (base rate)", text: pct(t.base, 0) }),
    el("td", { class: `num ${t.direction}`, title: "share / base", text: lift(t) }), markCell(t));
  const body = el("tbody", null, enr.correct ? row("correct", enr.correct, "correct-row") : null,
    shown.map(([task, t]) => row(task, t)));
  if (shown.length < tasks.length) {
    body.append(el("tr", null, el("td", { colspan: 6, class: "hint", text: `+${tasks.length - shown.length} more task${tasks.length - shown.length === 1 ? "" : "s"}` })));
  }
  return el("table", { class: "data compact enrichment", id },
    el("thead", null, el("tr", null, ["", "n", "share", "base", "lift", "sig"].map((t, i) => el("th", { class: i && i < 5 ? "num" : null, text: t })))), body);
}
