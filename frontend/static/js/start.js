/* The one way a page starts: its module calls start(init) once the document is parsed
 * (module scripts run deferred). Errors end up in the status line; data-ready marks the end
 * either way, so tests and screenshots know when a page is done. */
import { status } from "./dom.js";
import { plotlyLoaded } from "./plots.js";

/** Run a page's ``init``; ``plots``: whether the page draws charts (then plotly.js must have loaded). */
export async function start(init, { plots = true } = {}) {
  if (plots && !plotlyLoaded()) {
    status("plotly.js did not load (/static/plotly.min.js): charts cannot be drawn.");
    document.body.dataset.ready = "1";
    return;
  }
  document.body.classList.add("loading");
  try {
    await init();
  } catch (e) {
    status(e && e.message ? e.message : String(e));
  } finally {
    document.body.classList.remove("loading");
    document.body.dataset.ready = "1";
  }
}
