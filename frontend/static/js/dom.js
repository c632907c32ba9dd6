/* DOM helpers shared by every page. Everything that comes from the API (code, targets,
 * completions, tokens, paths, task names) is inserted as text: el() and append() create text
 * nodes, innerHTML is never used. Views keep their state in the URL (query string; /try's code
 * in the hash) so that a link reproduces them. */
export const $ = (sel, root = document) => root.querySelector(sel);

/** An element with properties and children; strings become text nodes, never HTML. */
export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = String(v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  return append(node, children);
}

export function append(node, children) {
  for (const c of [children].flat(Infinity)) {
    if (c == null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function clear(node) { node.replaceChildren(); return node; }

/** A same-origin link to ``path`` with query parameters (empty ones left out). */
export function href(path, query) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(query || {})) if (v != null && v !== "") p.set(k, v);
  const s = p.toString();
  return s ? `${path}?${s}` : path;
}

export const params = () => new URLSearchParams(location.search);

/** Replace the query string's ``changes`` (null or "" removes a key), keeping the hash. */
export function setParams(changes) {
  const p = params();
  for (const [k, v] of Object.entries(changes)) {
    if (v == null || v === "") p.delete(k); else p.set(k, v);
  }
  const s = p.toString();
  history.replaceState(null, "", location.pathname + (s ? `?${s}` : "") + location.hash);
}

export function intParam(p, name, fallback = null) {
  const v = p.get(name);
  if (v == null || v === "" || !/^-?\d+$/.test(v)) return fallback;
  return parseInt(v, 10);
}

export const enc = encodeURIComponent;

export function errorBox(err, what) {
  return el("div", { class: "error", role: "alert" },
    what ? el("b", { text: `${what}: ` }) : null, err && err.message ? err.message : String(err));
}

export function status(message, kind = "error") {
  const box = $("#status");
  if (!box) return;
  if (!message) { box.hidden = true; clear(box); return; }
  box.hidden = false;
  box.className = `status ${kind}`;
  box.textContent = message;
}

// ---------------------------------------------------------------- downloads

export function download(filename, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = el("a", { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function csv(rows, columns) {
  const cell = (v) => {
    if (v == null) return "";
    if (typeof v === "object") v = JSON.stringify(v);
    v = String(v);
    return /[",\n\r]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
  };
  return [columns.join(","), ...rows.map((r) => columns.map((c) => cell(r[c])).join(","))].join("\r\n") + "\r\n";
}
