/* /try's code form: the textarea, what to complete (a selected span, a task's span, the
 * cursor), and the page's link, which carries the code and the run's choices in its hash. */
import { $, el, status } from "../../dom.js";
import { api } from "../../api.js";
import { shorten, visible } from "../../format.js";

const EXAMPLE = `import java.util.HashMap;
import java.util.Map;

/** A small stock of items and their quantities. */
public class Inventory {
  private final Map<String, Integer> counts = new HashMap<>();

  public void add(String item, int quantity) {
      if (quantity <= 0) {
          throw new IllegalArgumentException("quantity must be positive");
      }
      counts.merge(item, quantity, Integer::sum);
  }

  public boolean remove(String item, int quantity) {
      Integer current = counts.get(item);
      if (current == null || current < quantity) {
          return false;
      }
      if (current == quantity) {
          counts.remove(item);
      } else {
          counts.put(item, current - quantity);
      }
      return true;
  }

  public int total() {
      int sum = 0;
      for (int value : counts.values()) {
          sum += value;
      }
      return sum;
  }
}
`;

/** Longest code (UTF-8 bytes) kept in the link; longer code stays out of the URL. */
const MAX_LINK_CODE_BYTES = 16 * 1024;

function b64encode(str) {
  const bytes = new TextEncoder().encode(str);
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function b64decode(s) {
  s = s.replace(/-/g, "+").replace(/_/g, "/");
  while (s.length % 4) s += "=";
  const bin = atob(s);
  return new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
}

// the server counts characters (code points); the textarea counts UTF-16 units
const toPoints = (str, units) => Array.from(str.slice(0, units)).length;
function toUnits(str, points) {
  let u = 0, c = 0;
  for (const ch of str) { if (c >= points) break; u += ch.length; c++; }
  return u;
}
export const sliceByPoints = (str, a, b) => str.slice(toUnits(str, a), toUnits(str, b));

/** Set up the form from the link's hash (code, span or cursor, ablated and selected heads go
 * into ``st``). Returns ``request()``, the body of /api/predict from the form (throws with a
 * message when it is incomplete), ``writeHash()``, which puts ``st`` back into the link,
 * ``fromLink``: whether the link asks to rerun its code, and ``run`` (/api/run). */
export async function codeForm(st) {
  const ta = $("#code"), taskSel = $("#task");
  const modeInput = (m) => $(`input[name=mode][value=${m}]`);
  const mode = () => ($("input[name=mode]:checked") || modeInput("task")).value;
  const setMode = (m) => { modeInput(m).checked = true; };

  // --- state from the hash
  const hash = new URLSearchParams(location.hash.slice(1));
  let code = EXAMPLE, decoded = false;
  if (hash.get("code")) {
    try { code = b64decode(hash.get("code")); decoded = true; } catch (_e) { status("The link's code could not be decoded; showing the example instead."); }
  }
  ta.value = code;
  const run = await api("/api/run");
  const tasks = (run.tasks && run.tasks.length ? run.tasks : ["identifiers"]).filter((t) => t !== "noise");
  for (const t of tasks) taskSel.append(el("option", { value: t, text: t }));
  taskSel.value = tasks.includes(hash.get("task")) ? hash.get("task") : (tasks.includes("identifiers") ? "identifiers" : tasks[0]);
  if (hash.has("start") && hash.has("end")) {
    st.span = [parseInt(hash.get("start"), 10), parseInt(hash.get("end"), 10)];
    setMode("span");
  } else if (hash.has("cursor")) {
    st.cursor = parseInt(hash.get("cursor"), 10);
    setMode("cursor");
  } else {
    setMode("task");
  }
  for (const h of (hash.get("ablate") || "").split(",")) if (/^\d+\.\d+$/.test(h)) st.ablate.add(h);
  const sel = (hash.get("head") || "").match(/^(\d+)\.(\d+)$/);
  if (sel) st.selected = [parseInt(sel[1], 10), parseInt(sel[2], 10)];

  // --- selection and cursor
  const selInfo = $("#sel-info"), cursorInfo = $("#cursor-info");
  const describe = () => {
    const text = ta.value;
    if (st.span && st.span[1] <= Array.from(text).length) {
      selInfo.textContent = `characters ${st.span[0]}–${st.span[1]}: “${shorten(visible(sliceByPoints(text, st.span[0], st.span[1])), 40)}”`;
    } else {
      selInfo.textContent = "(select text above)";
    }
    if (st.cursor != null) {
      const before = sliceByPoints(text, 0, st.cursor).split("\n");
      cursorInfo.textContent = `(line ${before.length}, column ${before[before.length - 1].length + 1})`;
    } else {
      cursorInfo.textContent = "";
    }
  };
  const onSelect = () => {
    const text = ta.value, a = ta.selectionStart, b = ta.selectionEnd;
    if (b > a) {
      st.span = [toPoints(text, a), toPoints(text, b)];
      setMode("span");
    } else {
      st.cursor = toPoints(text, a);
    }
    describe();
  };
  for (const ev of ["select", "mouseup", "keyup"]) ta.addEventListener(ev, onSelect);
  ta.addEventListener("input", () => { st.span = null; describe(); });
  $("#example").addEventListener("click", () => { ta.value = EXAMPLE; st.span = null; st.cursor = null; setMode("task"); describe(); });
  describe();

  const request = () => {
    const text = ta.value;
    const body = { code: text };
    const m = mode();
    if (m === "span") {
      if (!st.span || st.span[1] <= st.span[0]) throw new Error("select the span to mask in the code first (or pick a task)");
      body.start = st.span[0]; body.end = st.span[1];
    } else if (m === "cursor") {
      body.cursor = st.cursor ?? toPoints(text, ta.selectionStart);
    } else {
      body.task = taskSel.value;
    }
    if (!text.trim()) throw new Error("the code is empty");
    return body;
  };

  const writeHash = () => {
    const h = new URLSearchParams();
    const body = st.request;
    const bytes = new TextEncoder().encode(body ? body.code : ta.value).length;
    if (body && bytes <= MAX_LINK_CODE_BYTES) {
      h.set("code", b64encode(body.code));
      for (const k of ["task", "start", "end", "cursor"]) if (body[k] != null) h.set(k, body[k]);
      $("#link-note").textContent = "The page's link reproduces this run.";
    } else if (body) {
      $("#link-note").textContent = `The code is over ${MAX_LINK_CODE_BYTES / 1024} KB, too long to keep in the link.`;
    }
    if (st.ablate.size) h.set("ablate", [...st.ablate].join(","));
    if (st.selected) h.set("head", st.selected.join("."));
    history.replaceState(null, "", `${location.pathname}${location.search}${h.toString() ? `#${h}` : ""}`);
  };

  const fromLink = decoded && (hash.has("task") || hash.has("start") || hash.has("cursor"));
  return { request, writeHash, fromLink, run };
}
