/* plotly.js (served locally, loaded as a classic script before the modules) with the
 * explorer's fonts, colours and PNG export. */
const FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';
export const MONO = 'ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace';
export const NOISE = "#b0b0b0";
/** Colours for many categories (Kelly's colours of maximum contrast, then Tableau's), none grey. */
const CATEGORICAL = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
  "#f3c300", "#875692", "#a1caf1", "#be0032", "#c2b280", "#008856", "#e68fac", "#0067a5", "#f99379", "#604e97",
  "#b3446c", "#dcd300", "#882d17", "#8db600", "#654522", "#e25822", "#2b3d26", "#393b79", "#637939", "#7b4173",
  "#3182bd", "#e6550d", "#31a354"];
/** Marker symbols (plotly names and the glyph a legend or card shows) that multiply the colours. */
const SYMBOLS = [["circle", "●"], ["diamond", "◆"], ["square", "■"], ["triangle-up", "▲"], ["x", "✕"], ["star", "★"]];
/** The ``i``-th of many categories' look: a colour, then the next symbol once the colours run
 * out, so that no two of up to colours × symbols categories look alike. */
export function categoryStyle(i) {
  const [symbol, glyph] = SYMBOLS[Math.floor(i / CATEGORICAL.length) % SYMBOLS.length];
  return { color: CATEGORICAL[i % CATEGORICAL.length], symbol, glyph };
}
const PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

/** Whether plotly.js loaded (a page without it can still say why its charts are missing). */
export const plotlyLoaded = () => typeof Plotly !== "undefined";

/** Draw ``data`` into ``div`` with the explorer's look; ``filename``: the PNG export's name. */
export function plot(div, data, layout, filename) {
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

/** Change a drawn plot's layout (``update``: plotly's "axis.key" paths). */
export const relayout = (div, update) => Plotly.relayout(div, update);
