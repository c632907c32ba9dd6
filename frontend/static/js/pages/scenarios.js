/* The page of the scenarios table: filters, paging and downloads. */
import { $, clear, csv, download, el, href, intParam, params } from "../dom.js";
import { api } from "../api.js";
import { prob, shorten, visible } from "../format.js";
import { mark, pager } from "../views.js";
import { start } from "../start.js";

const SCENARIO_COLUMNS = ["key", "task", "split", "path", "start", "end", "target", "completion", "correct_first_token", "correct_exact", "logprob_target_first"];

async function scenariosPage() {
  const p = params();
  const form = $("#filters");
  const limit = Math.min(500, Math.max(1, intParam(p, "limit", 50)));
  const offset = Math.max(0, intParam(p, "offset", 0));
  const run = await api("/api/run").catch(() => ({ tasks: [] }));
  for (const t of run.tasks || []) $("#f-task").append(el("option", { value: t, text: t }));
  $("#f-q").value = p.get("q") || "";
  $("#f-task").value = (run.tasks || []).includes(p.get("task")) ? p.get("task") : "";
  $("#f-correct").value = ["true", "false"].includes(p.get("correct")) ? p.get("correct") : "";
  $("#f-split").value = ["train", "test"].includes(p.get("split")) ? p.get("split") : "";

  const filters = () => ({ q: $("#f-q").value.trim(), task: $("#f-task").value, correct: $("#f-correct").value, split: $("#f-split").value });
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    location.href = href("/scenarios", { ...filters(), limit: limit === 50 ? null : limit });
  });
  for (const id of ["#f-task", "#f-correct", "#f-split"]) $(id).addEventListener("change", () => form.requestSubmit());

  const current = { ...filters(), limit, offset };
  const data = await api(href("/api/scenarios", current));
  const body = clear($("#table tbody"));
  for (const s of data.items) {
    const link = href("/scenario", { key: s.key });
    body.append(el("tr", null,
      el("td", null, el("a", { href: link, class: "mono", text: s.key })),
      el("td", { text: s.task }), el("td", { text: s.split }),
      el("td", { class: "path", title: s.path, text: s.path }),
      el("td", null, el("code", { text: shorten(visible(s.target), 40) })),
      el("td", null, el("code", { text: shorten(visible(s.completion), 40) })),
      el("td", null, mark(s.correct_first_token)), el("td", null, mark(s.correct_exact)),
      el("td", { class: "num", text: s.logprob_target_first == null ? "—" : prob(Math.exp(s.logprob_target_first)) })));
  }
  if (!data.items.length) body.append(el("tr", null, el("td", { colspan: 9, class: "hint", text: "No scenario matches." })));
  $("#count").textContent = data.total ? `${offset + 1}–${offset + data.items.length} of ${data.total} scenarios` : "0 scenarios";
  pager($("#pager"), offset, limit, data.total, (o) => href("/scenarios", { ...filters(), limit: limit === 50 ? null : limit, offset: o || null }));
  const name = `scenarios${current.task ? `-${current.task}` : ""}-${offset}`;
  $("#dl-csv").addEventListener("click", () => download(`${name}.csv`, csv(data.items, SCENARIO_COLUMNS), "text/csv"));
  $("#dl-json").addEventListener("click", () => download(`${name}.json`, JSON.stringify(data.items, null, 2), "application/json"));
}

start(scenariosPage, { plots: false });
