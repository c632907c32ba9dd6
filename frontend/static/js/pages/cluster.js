/* The page of a cluster: what sets it apart (description, metrics, enrichment, medoid against
 * the head's mean), its exemplars' heatmaps and attention on the code, and its members a page at a time. */
import { $, clear, el, enc, errorBox, href, intParam, params, setParams } from "../dom.js";
import { api } from "../api.js";
import { headName, visible } from "../format.js";
import { fetchPattern, patternView } from "../heatmap.js";
import { enrichmentTable, metricsTable } from "../reading.js";
import { attHint, attentionCode, layerMean, linkedViews } from "../attention.js";
import { codeView, correctBar, mark, pager, scenarioPattern, scenarioThumb, taskMix, thumb } from "../views.js";
import { start } from "../start.js";

const MEMBERS_PER_PAGE = 10;

/** The layer-mean option of a scenario's attention view: every head of layer ``l`` it has a
 * pattern of (those the scenario's detail lists). */
const scenarioLayer = (key, sc, l) => layerMean(l, sc.heads.filter((h) => h.layer === l).sort((a, b) => a.head - b.head)
  .map((h) => scenarioPattern(key, l, h.head)));

/** A member's attention on the code at the cluster's head (opened by its button), under its code. */
async function memberAttention(box, key, sc, c) {
  const pattern = await fetchPattern(box, scenarioPattern(key, c.layer, c.head));
  if (!pattern || !box.isConnected) return;
  clear(box).append(el("p", { class: "hint", text: `Attention on the code · head ${headName(c.layer, c.head)}. ${attHint(false)}` }),
    attentionCode([{ label: key, pattern, layer: scenarioLayer(key, sc, c.layer) }], { hole: sc.target }));
}

/** The medoid beside the head's mean pattern and their difference (where the medoid attends
 * more, red; less, blue): what sets this cluster's typical pattern apart from its head's. */
function againstHead(c) {
  const boxes = ["head's mean pattern", "medoid", "medoid − head's mean"].map((title) => el("div", null, el("h3", { text: title }), el("div")));
  clear($("#against-head")).append(el("div", { class: "cols three" }, boxes));
  const urls = [`/api/heads/${c.layer}/${c.head}/mean-pattern`, c.medoid ? scenarioPattern(c.medoid, c.layer, c.head) : null,
    c.medoid ? `/api/clusters/${c.id}/difference-pattern` : null];
  const names = ["mean", `medoid-${c.medoid}`, "difference"];
  boxes.forEach((box, i) => {
    const target = box.lastChild;
    if (!urls[i]) { target.append(el("p", { class: "hint", text: "The noise has no medoid." })); return; }
    fetchPattern(target, urls[i]).then((pattern) => {
      if (!pattern) return;
      const caption = i === 0 ? `Mean over ${pattern.n} kept patterns of the head (positions, not tokens: prompts differ).` : null;
      clear(target).append(patternView(pattern, { small: true, caption, filename: `cluster-${c.id}-${names[i]}-L${c.layer}-H${c.head}` }));
    });
  });
}

async function clusterPage() {
  const p = params();
  const id = intParam(p, "id");
  if (id == null) throw new Error("no cluster given: open one from a head's page (the link needs ?id=)");
  const offset = Math.max(0, intParam(p, "offset", 0));
  const c = await api(`/api/clusters/${id}?limit=${MEMBERS_PER_PAGE}&offset=${offset}`);
  const name = c.label < 0 ? "noise" : `cluster ${c.label}`;
  document.title = `${name} of ${headName(c.layer, c.head)} · ${document.title}`;
  $("#cluster-title").textContent = `${c.label < 0 ? "Noise" : `Cluster ${c.label}`} of head ${headName(c.layer, c.head)}`;
  const crumb = $("#crumb-head");
  crumb.href = href("/head", { layer: c.layer, head: c.head });
  crumb.textContent = headName(c.layer, c.head);
  $("#crumb-cluster").textContent = name;
  const summary = $("#cluster-summary");
  summary.append(`${c.size} scenarios. Tasks: ${taskMix(c.by_task, 6)}. `, correctBar(c.by_correct));
  $("#cluster-description").textContent = c.description ? `Pattern: ${c.description}.`
    : "No pattern metrics: the run keeps no patterns of this head (`apmae extract --keep`).";
  $("#cluster-enrichment").append(enrichmentTable(c.enrichment, { id: "enrichment-table" }));
  const metricsBox = $("#cluster-metrics");
  api(`/api/heads/${c.layer}/${c.head}`).then((info) => info.metrics, () => null)
    .then((whole) => metricsBox.append(metricsTable([[name, c.metrics], [`head ${headName(c.layer, c.head)}`, whole]], { id: "metrics-table" })));
  againstHead(c);

  // exemplars: thumbnails, one full heatmap at a time (state: ?ex=)
  const exemplars = c.exemplars || [];
  const strip = $("#exemplars"), detail = $("#exemplar-detail");
  let shown = 0;
  const show = (i) => {
    const key = exemplars[i];
    setParams({ ex: i ? i : null });
    for (const b of strip.querySelectorAll("button")) b.classList.toggle("selected", Number(b.dataset.i) === i);
    const plotBox = el("div"), codeBox = el("div", { class: "att-box" });
    clear(detail).append(
      el("p", { class: "hint" }, "Exemplar ", el("a", { href: href("/scenario", { key, layer: c.layer, head: c.head }), text: key }),
        key === c.medoid ? " (the medoid)" : ""),
      el("div", { class: "cols two pattern-and-code" }, plotBox, codeBox));
    const mine = ++shown;
    Promise.all([fetchPattern(plotBox, scenarioPattern(key, c.layer, c.head)), api(`/api/scenarios/${enc(key)}`).catch(() => null)])
      .then(([pattern, sc]) => {
        if (!pattern || mine !== shown) return;
        const { code, heatmaps } = linkedViews([{ label: key, pattern, layer: sc ? scenarioLayer(key, sc, c.layer) : null,
          filename: `pattern-${key}-L${c.layer}-H${c.head}` }], { hole: sc ? sc.target : null });
        clear(plotBox).append(heatmaps[0]);
        clear(codeBox).append(el("h3", { text: "Attention on the code" }), el("p", { class: "hint", text: attHint() }), code);
      });
  };
  exemplars.forEach((key, i) => {
    strip.append(el("button", { type: "button", class: "thumb-button", dataset: { i }, title: `exemplar ${key}`, onclick: () => show(i) },
      thumb(scenarioThumb(key, c.layer, c.head), `exemplar ${key}`),
      el("span", { class: "cap", text: key === c.medoid ? `${key} ★` : key })));
  });
  if (exemplars.length) {
    const ex = intParam(p, "ex", 0);
    show(ex >= 0 && ex < exemplars.length ? ex : 0);
  } else {
    strip.append(el("p", { class: "hint", text: "No exemplars stored for this cluster." }));
  }

  // members, a page at a time, with their code
  $("#members-count").textContent = c.size ? `${offset + 1}–${Math.min(offset + c.members.length, c.size)} of ${c.size}` : "";
  pager($("#members-pager"), offset, MEMBERS_PER_PAGE, c.size, (o) => href("/cluster", { id, offset: o || null, ex: p.get("ex") }));
  const list = $("#members");
  const articles = c.members.map((m) => {
    const att = el("div", { class: "member-att", hidden: true });
    const open = el("button", { type: "button", class: "att-open", disabled: true, "aria-expanded": "false",
      title: `what each token attends to at head ${headName(c.layer, c.head)}`, text: "attention on the code" });
    const article = el("article", { class: "member" },
      el("header", null,
        el("a", { href: href("/scenario", { key: m.key, layer: c.layer, head: c.head }), text: m.key }),
        el("span", { class: "tag", text: m.task }), el("span", { class: "path", text: m.path }),
        el("span", { class: "hint", text: m.split }), mark(m.correct_first_token), open),
      el("div", { class: "member-code" }, el("p", { class: "hint", text: "Loading the code…" })),
      att,
      el("p", { class: "completion" }, "target ", el("code", { text: visible(m.target) }), "  completion ", el("code", { text: visible(m.completion) })));
    list.append(article);
    return { m, article, att, open };
  });
  await Promise.all(articles.map(async ({ m, article, att, open }) => {
    const box = article.querySelector(".member-code");
    try {
      const s = await api(`/api/scenarios/${enc(m.key)}`);
      clear(box).append(s.prefix == null ? el("p", { class: "hint", text: "The prompt's text is not available." }) : codeView(s.prefix, s.target, s.suffix, { context: 4 }));
      open.disabled = false;
      open.addEventListener("click", () => {
        att.hidden = !att.hidden;
        open.setAttribute("aria-expanded", String(!att.hidden));
        open.classList.toggle("selected", !att.hidden);
        if (!att.hidden && !att.children.length) memberAttention(att, m.key, s, c);
      });
    } catch (e) {
      clear(box).append(errorBox(e, "Code"));
    }
  }));
}

start(clusterPage);
