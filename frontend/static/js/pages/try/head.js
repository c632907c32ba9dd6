/* /try's head panel: one head's pattern on the prompt (baseline and, after an ablation, the
 * ablated run side by side), its attention on the code, and its cluster's exemplars. */
import { $, clear, el, errorBox, href } from "../../dom.js";
import { api } from "../../api.js";
import { clusterName, headName } from "../../format.js";
import { attHint, layerMean, linkedViews } from "../../attention.js";
import { fetchPattern } from "../../heatmap.js";
import { scenarioThumb, thumb } from "../../views.js";

/** Open head (l, h) of ``st``'s run in the panel; ``writeHash()`` records it in the link. */
export async function showHead(st, l, h, writeHash) {
  const r = st.intervention || st.result;
  const entry = r && r.heads.find((x) => x.layer === l && x.head === h);
  if (!entry) return;
  st.selected = [l, h];
  writeHash();
  for (const td of document.querySelectorAll("#try-grid td")) td.classList.toggle("selected", Number(td.dataset.layer) === l && Number(td.dataset.head) === h);
  const panel = $("#head-panel");
  panel.hidden = false;
  $("#head-panel-title").textContent = `Head ${headName(l, h)} · ${clusterName(entry.cluster)}`;
  const body = clear($("#head-panel-body"));
  const plots = el("div", { class: st.intervention ? "cols two" : "cols pattern-and-exemplars" });
  const base = el("div", null, el("h3", { text: st.intervention ? "baseline" : "this prompt" }), el("div"));
  plots.append(base);
  const attBox = el("div", { class: "att-box" }, el("h3", { text: `Attention on the code · ${headName(l, h)}` }), el("p", { class: "hint", text: attHint() }),
    el("p", { class: "hint loading", text: "Loading the pattern…" }));
  const loads = [fetchPattern(base.lastChild, entry.pattern_url)];
  if (st.intervention) {
    const changedHead = (st.intervention.ablated.changed_heads || []).find((c) => c.layer === l && c.head === h);
    const wasAblated = st.intervention.ablate.some(([a, b]) => a === l && b === h);
    const after = el("div", null, el("h3", { text: `ablated run${wasAblated ? " (this head is switched off)" : ""}${changedHead ? ` — cluster ${clusterName(changedHead.before)}→${clusterName(changedHead.after)}` : ""}` }), el("div"));
    plots.append(after);
    loads.push(fetchPattern(after.lastChild, `${entry.pattern_url}?which=ablated`));
  }
  const boxes = [...plots.children].map((c) => c.lastChild);
  const target = st.result.target;
  Promise.all(loads).then((patterns) => {
    if (!plots.isConnected) return;  // another head (or run) was shown meanwhile
    const urls = r.heads.filter((x) => x.layer === l).sort((a, b) => a.head - b.head).map((x) => x.pattern_url);
    const sources = patterns.map((pattern, i) => ({ label: i ? "ablated run" : "baseline", pattern, box: boxes[i],
      layer: layerMean(l, i ? urls.map((u) => `${u}?which=ablated`) : urls), filename: `try-L${l}-H${h}${i ? "-ablated" : ""}` }))
      .filter((x) => x.pattern);
    if (!sources.length) { attBox.lastChild.replaceWith(el("p", { class: "hint", text: "No pattern to show." })); return; }
    const { code, heatmaps } = linkedViews(sources, { hole: target });
    sources.forEach((x, i) => clear(x.box).append(heatmaps[i]));
    attBox.lastChild.replaceWith(code);
  });
  const exemplars = el("div", { class: "exemplars" }, el("h3", { text: `Exemplars of ${clusterName(entry.cluster)}` }), el("p", { class: "hint", text: "Loading…" }));
  body.append(plots, attBox, exemplars);
  panel.scrollIntoView({ behavior: "smooth", block: "nearest" });
  if (entry.cluster == null) { exemplars.lastChild.textContent = "This run has no clusters to compare with."; return; }
  if (entry.cluster < 0) { exemplars.lastChild.textContent = "This pattern is noise: it lies near none of the head's clusters, so there are no exemplars to compare with."; return; }
  try {
    const info = await api(`/api/heads/${l}/${h}?metrics=false`);
    const c = info.clusters.find((x) => x.label === entry.cluster);
    if (!c) { exemplars.lastChild.textContent = "No stored cluster with this label."; return; }
    const strip = el("div", { class: "thumbs" }, (c.exemplars || []).map((key) =>
      el("a", { class: "thumb-button", href: href("/scenario", { key, layer: l, head: h }), title: `exemplar ${key}` },
        thumb(scenarioThumb(key, l, h), `exemplar ${key}`), el("span", { class: "cap", text: key }))));
    exemplars.replaceChildren(el("h3", null, `Exemplars of ${clusterName(entry.cluster)} (`,
      el("a", { href: href("/cluster", { id: c.id }), text: `${c.size} scenarios` }), ")"), strip);
  } catch (e) {
    exemplars.lastChild.replaceWith(errorBox(e, "Exemplars"));
  }
}
