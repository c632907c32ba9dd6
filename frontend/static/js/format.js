/* Numbers, intervals and strings as the pages write them. */
export const pct = (v, d = 1) => (v == null || Number.isNaN(v) ? "—" : `${(100 * v).toFixed(d)}%`);
export const num = (v, d = 3) => (v == null || Number.isNaN(v) ? "—" : Number(v).toFixed(d));
/** A head as every page and export writes it: L1H4. */
export const headName = (l, h) => `L${l}H${h}`;
/** A probability with 3 decimals, or 2 significant digits when smaller than 0.001. */
export const prob = (v) => (v == null ? "—" : v === 0 || v >= 0.001 ? Number(v).toFixed(3) : Number(v).toExponential(1));
export const clusterName = (label) => (label == null ? "—" : label < 0 ? "noise" : `c${label}`);

/** `` [lo, hi]`` of a 95% interval (each end through ``f``), or "" without one. */
export function interval(ci, f = (x) => Number(x).toFixed(2)) {
  return ci && ci[0] != null && ci[1] != null ? ` [${f(ci[0])}, ${f(ci[1])}]` : "";
}
/** A value with its interval: "0.71 [0.66, 0.75]". */
export const withCi = (v, ci, d = 2) => (v == null ? "—" : `${num(v, d)}${interval(ci, (x) => num(x, d))}`);
/** A signed number with a real minus sign (no sign on what rounds to zero): −1.07. */
export function signed(v, d = 2) {
  if (v == null || Number.isNaN(v)) return "—";
  const t = Math.abs(v).toFixed(d);
  return Number(t) === 0 ? t : `${v > 0 ? "+" : "−"}${t}`;
}
/** An accuracy change in points, signed: 0.05 → "+5.0". */
export const delta = (v, d = 1) => (v == null || Number.isNaN(v) ? "—" : signed(100 * v, d));
export const deltaCi = (v, ci) => (v == null ? "—" : `${delta(v)}${interval(ci, delta)}`);
/** A signed change with its interval: −1.07 [−1.22, −0.92]. */
export const signedCi = (v, ci, d = 2) => (v == null ? "—" : `${signed(v, d)}${interval(ci, (x) => signed(x, d))}`);

/** The Wilson 95% interval of a share ``p`` of ``n`` trials: [lo, hi], or null without trials. */
export function wilson(p, n) {
  if (p == null || !n) return null;
  const z = 1.96, z2 = z * z, centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}

/** How interval ``a`` lies against interval ``b``: "above", "below" or "level" (they
 * overlap); null when a value is missing. A missing interval counts as its point. */
export function versus(a, aci, b, bci) {
  if (a == null || b == null) return null;
  const [alo, ahi] = aci && aci[0] != null ? aci : [a, a];
  const [blo, bhi] = bci && bci[0] != null ? bci : [b, b];
  return alo > bhi ? "above" : ahi < blo ? "below" : "level";
}

/** Whitespace made visible, for tokens and short strings shown out of their code. */
export function visible(s) {
  return String(s ?? "").replace(/\n/g, "↵").replace(/\t/g, "⇥").replace(/ /g, "·");
}

export function shorten(s, n) {
  s = String(s ?? "");
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

/** Plotly renders a pseudo-HTML subset in labels and hover text: escape it. */
export function plotText(s) {
  return String(s ?? "").replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}
