/* The page of one scenario: its code, every head's thumbnail, and a head's heatmap and attention on the code. */
import { $, clear, el, enc, href, intParam, params, setParams } from "../dom.js";
import { api } from "../api.js";
import { clusterName, headName, prob, visible } from "../format.js";
import { fetchPattern } from "../heatmap.js";
import { layerMean, linkedViews } from "../attention.js";
import { codeView, facts, headGrid, mark, scenarioPattern, scenarioThumb, thumb } from "../views.js";
import { start } from "../start.js";

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
      const layer = layerMean(l, Array.from({ length: nheads }, (_, x) => scenarioPattern(key, l, x)));
      const { code, heatmaps } = linkedViews([{ label: key, pattern, layer, filename: `pattern-${key}-L${l}-H${h}` }], { hole: s.target });
      clear(plotBox).append(heatmaps[0]);
      clear(attBox).append(code);
    });
    if (label != null) {
      try {
        const info = await api(`/api/heads/${l}/${h}?metrics=false`);
        const c = info.clusters.find((x) => x.label === label);
        if (c) links.append(" · ", el("a", { href: href("/cluster", { id: c.id }), text: `open ${clusterName(label)} (${c.size} scenarios)` }));
      } catch (_e) { /* the head link is enough */ }
    }
  }
  const l0 = intParam(p, "layer"), h0 = intParam(p, "head");
  if (l0 != null && h0 != null && l0 >= 0 && h0 >= 0 && l0 < layers && h0 < nheads) select(l0, h0);
}

start(scenarioPage);
