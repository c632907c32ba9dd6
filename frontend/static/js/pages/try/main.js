/* The /try page: run the model on your own Java (form.js), show its result (results.js), switch
 * heads off and rerun (ablation.js), and open a head (head.js). Everything is in ``st``, and the
 * link (its hash) reproduces it. */
import { $, clear, errorBox } from "../../dom.js";
import { post } from "../../api.js";
import { start } from "../../start.js";
import { ablationGrid } from "./ablation.js";
import { codeForm } from "./form.js";
import { showHead } from "./head.js";
import { renderResult } from "./results.js";

async function tryPage() {
  const runBtn = $("#run"), rerunBtn = $("#rerun"), resultBox = $("#result");
  const st = {
    span: null, cursor: null, suggested: new Set(), ablate: new Set(), selected: null,
    result: null, request: null, intervention: null, which: "baseline", layers: 0, nheads: 0,
  };
  const { request, writeHash, fromLink, run } = await codeForm(st);
  const open = (l, h) => showHead(st, l, h, writeHash);
  const { renderGrid, syncChecks } = ablationGrid(st, run, { writeHash, showHead: open });

  let timer = null;
  const busy = (on, what) => {
    runBtn.disabled = on;
    rerunBtn.disabled = on || !st.result || !st.ablate.size;
    const box = $("#progress");
    box.hidden = !on;
    clearInterval(timer);
    if (on) {
      const t0 = performance.now();
      const tick = () => { $("#progress-text").textContent = `${what}… ${((performance.now() - t0) / 1000).toFixed(1)} s`; };
      tick();
      timer = setInterval(tick, 100);
    }
  };

  async function runPredict() {
    let body;
    try { body = request(); } catch (e) { clear(resultBox).append(errorBox(e)); return; }
    busy(true, "Completing");
    try {
      const r = await post("/api/predict", body);
      st.result = r; st.request = body; st.intervention = null; st.which = "baseline";
      st.layers = Math.max(...r.heads.map((h) => h.layer)) + 1;
      st.nheads = Math.max(...r.heads.map((h) => h.head)) + 1;
      for (const k of [...st.ablate]) { const [l, h] = k.split(".").map(Number); if (l >= st.layers || h >= st.nheads) st.ablate.delete(k); }
      if (st.selected && (st.selected[0] >= st.layers || st.selected[1] >= st.nheads)) st.selected = null;
      renderResult(st);
      renderGrid();
      writeHash();
      if (st.selected) open(...st.selected);
    } catch (e) {
      clear(resultBox).append(errorBox(e, "The model could not run"));
    } finally {
      busy(false);
    }
  }

  async function runIntervene() {
    if (!st.request || !st.ablate.size) return;
    const ablate = [...st.ablate].map((k) => k.split(".").map(Number));
    busy(true, `Running with ${ablate.length} head${ablate.length === 1 ? "" : "s"} ablated`);
    try {
      const r = await post("/api/intervene", { ...st.request, ablate });
      st.intervention = r;
      renderResult(st);
      renderGrid();
      writeHash();
      if (st.selected) open(...st.selected);
    } catch (e) {
      $("#compare-box") ? clear($("#compare-box")).append(errorBox(e, "Ablation failed")) : resultBox.append(errorBox(e, "Ablation failed"));
    } finally {
      busy(false);
    }
  }

  runBtn.addEventListener("click", runPredict);
  rerunBtn.addEventListener("click", runIntervene);

  // a link with code reproduces its run (and its ablation)
  if (fromLink) {
    await runPredict();
    if (st.result && st.ablate.size) await runIntervene();
  }
  syncChecks();
}

start(tryPage);
