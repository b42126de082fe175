// The lookalike page: no framework, no CDN, talks only to this server's API.
//
// Two modes. Browsing (no query): a grid of the collection, paged with "More", filtered by
// the label picker. Searching: by an item id or a text (the URL says
// ?id=..&k=..&label=..&threshold=..&where=.. or ?text=..&k=..: a search can be shared,
// bookmarked, and Back/Forward work), or by an uploaded image or a pasted URL (not in the address; their
// results stay until the next search). The text box is off when /health says the model has
// no text tower; a ?text= address then shows the server's error. The filter box holds a
// `where` expression (price < 20 and label = "shoes"): Enter applies it to the current
// search, clearing it removes it, and the server's one-line error (with its column) is the
// status message.
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE = 24; // items per browse page
const STEP = 12; // default k, and what "More results" adds
const TITLE_KEYS = ["title", "name", "caption"];
const state = {
  auth: "off",
  maxK: 1000,
  labels: new Map(), // label -> count
  total: 0,
  objectUrls: [],
  seq: 0, // the latest request: older answers are dropped
  mode: "browse",
  browse: { offset: 0, shown: 0, total: 0 },
  adhoc: null, // the last upload or URL search: {n, file | url, title}
  adhocN: 0,
  lastK: STEP,
  opener: null, // the element that opened the viewer
  notice: null, // a message for the next browse page
};

function apiKey() {
  return sessionStorage.getItem("lookalike-key") || "";
}

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (state.auth !== "off" && apiKey()) h["X-API-Key"] = apiKey();
  return h;
}

async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = headers(opts.headers);
  const resp = await fetch(path, opts);
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) {
    const msg = body && body.error ? body.error : `HTTP ${resp.status}`;
    if (resp.status === 401) $("key-box").hidden = false;
    throw new Error(msg);
  }
  return body;
}

function status(text, isError) {
  const el = $("status");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

function done() {
  document.body.dataset.busy = "0";
  document.body.dataset.renders = String(Number(document.body.dataset.renders || 0) + 1);
}

// With --api-key-all, images need the key too: fetch them and show blob URLs.
function setImage(img, url) {
  if (state.auth !== "all") { img.src = url; return; }
  fetch(url, { headers: headers() })
    .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(r.status))))
    .then((b) => { const u = URL.createObjectURL(b); state.objectUrls.push(u); img.src = u; })
    .catch(() => {});
}

function releaseImages() {
  state.objectUrls.forEach((u) => URL.revokeObjectURL(u));
  state.objectUrls = [];
}

// -- items -------------------------------------------------------------------------

function titleOf(item) {
  const m = item.metadata || {};
  const key = TITLE_KEYS.find((k) => typeof m[k] === "string" && m[k].trim());
  return key ? { text: m[key], key } : { text: item.id, key: null };
}

function show(value) {
  if (value === null || value === undefined) return "";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function scalarFields(item, skip, max) {
  const m = item.metadata || {};
  return Object.keys(m)
    .filter((k) => k !== skip && m[k] !== null && typeof m[k] !== "object")
    .slice(0, max)
    .map((k) => [k, show(m[k])]);
}

function span(cls, text) {
  const el = document.createElement("span");
  el.className = cls;
  el.textContent = text;
  return el;
}

// Text with a line-break opportunity after each "/" (ids are often paths).
function pathText(cls, text) {
  const el = span(cls, "");
  text.split(/(?<=\/)/).forEach((part, i) => {
    if (i) el.append(document.createElement("wbr"));
    el.append(part);
  });
  return el;
}

function card(item) {
  const li = document.createElement("li");
  li.className = "result";
  li.dataset.id = item.id;
  const open = document.createElement("button");
  open.type = "button";
  open.className = "card";
  const title = titleOf(item);
  open.title = title.key ? `${title.text} (${item.id})` : item.id;
  const img = document.createElement("img");
  img.loading = "lazy";
  img.alt = title.text;
  setImage(img, item.thumbnail_url);
  const meta = document.createElement("span");
  meta.className = "meta";
  const top = span("top", "");
  if (item.score !== undefined) top.append(span("score", Number(item.score).toFixed(3)));
  top.append(span("label", item.label || ""));
  meta.append(top, title.key ? span("title", title.text) : pathText("title", item.id));
  if (title.key) meta.append(pathText("id", item.id));
  for (const [k, v] of scalarFields(item, title.key, 2)) meta.append(span("field", `${k}: ${v}`));
  open.append(img, meta);
  open.addEventListener("click", () => openViewer(item, open));
  const similar = document.createElement("button");
  similar.type = "button";
  similar.className = "similar secondary";
  similar.textContent = "More like this";
  similar.addEventListener("click", () => searchId(item.id));
  li.append(open, similar);
  return li;
}

// -- the viewer --------------------------------------------------------------------

function openViewer(item, opener) {
  const dlg = $("viewer");
  state.opener = opener;
  const title = titleOf(item);
  $("viewer-title").textContent = title.text;
  const img = $("viewer-image");
  img.removeAttribute("src");
  img.alt = title.text;
  setImage(img, item.image_url);
  const rows = [["id", item.id], ["label", item.label || "(none)"]];
  if (item.score !== undefined) rows.push(["score", Number(item.score).toFixed(4)]);
  if (item.width && item.height) rows.push(["size", `${item.width} × ${item.height}`]);
  for (const [k, v] of Object.entries(item.metadata || {})) rows.push([k, show(v)]);
  const dl = $("viewer-meta");
  dl.replaceChildren();
  for (const [k, v] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    dl.append(dt, dd);
  }
  $("viewer-image-link").href = item.image_url;
  const source = $("viewer-source");
  const safe = typeof item.url === "string" && /^https?:\/\//i.test(item.url);
  source.hidden = !safe;
  source.href = safe ? item.url : "/";
  $("viewer-similar").onclick = () => { dlg.close(); searchId(item.id); };
  if (!dlg.open) dlg.showModal();
  $("viewer-close").focus();
}

function closed() {
  const opener = state.opener;
  state.opener = null;
  if (opener && opener.isConnected) opener.focus();
}

// -- controls and the address ------------------------------------------------------

function params() {
  const p = new URLSearchParams(location.search);
  const k = parseInt(p.get("k"), 10);
  const t = parseFloat(p.get("threshold"));
  return {
    id: p.get("id") || null,
    text: p.get("id") ? null : p.get("text") || null,
    k: k >= 1 ? Math.min(k, state.maxK) : STEP,
    label: p.get("label") || null,
    threshold: t > 0 && t <= 1 ? t : null,
    where: (p.get("where") || "").trim() || null,
  };
}

function controls() {
  const k = parseInt($("k-input").value, 10);
  const t = parseFloat($("threshold").value);
  return {
    k: k >= 1 ? Math.min(k, state.maxK) : STEP,
    label: $("label-select").value || null,
    threshold: t > 0 ? t : null,
    where: $("where-input").value.trim() || null,
  };
}

function ensureOption(label) {
  const select = $("label-select");
  if (label && ![...select.options].some((o) => o.value === label)) {
    const opt = new Option(`${label} (0)`, label);
    opt.dataset.unknown = "1";
    select.append(opt);
  }
}

// k, the threshold and the filter are in the address only with an id or a text: browsing
// keeps the controls' values.
function setControls(p) {
  ensureOption(p.label);
  $("label-select").value = p.label || "";
  $("text-input").value = p.text || "";
  if (!p.id && !p.text) return;
  $("k-input").value = String(p.k);
  $("threshold").value = String(p.threshold || 0);
  $("where-input").value = p.where || "";
  showThreshold();
}

function showThreshold() {
  const t = parseFloat($("threshold").value);
  $("threshold-value").textContent = t > 0 ? `≥ ${t.toFixed(2)}` : "any";
}

function address(p) {
  const q = new URLSearchParams();
  const query = p.id || p.text;
  if (p.id) q.set("id", p.id); else if (p.text) q.set("text", p.text);
  if (query) q.set("k", String(p.k));
  if (p.label) q.set("label", p.label);
  if (query && p.threshold) q.set("threshold", String(p.threshold));
  if (query && p.where) q.set("where", p.where);
  const s = q.toString();
  return s ? `/?${s}` : "/";
}

function navigate(p, replace) {
  const url = address(p);
  if (replace) history.replaceState(null, "", url); else history.pushState(null, "", url);
  route();
}

// What the address (and the history entry) says to show.
function route() {
  const p = params();
  setControls(p);
  const entry = history.state;
  if (entry && entry.adhoc) {
    if (state.adhoc && state.adhoc.n === entry.adhoc) {
      const o = controls();
      return runAdhoc(o);
    }
    state.notice = "That search was of an uploaded image: choose it again.";
  }
  if (p.id) return runId(p);
  if (p.text) return runText(p);
  return browse(p.label);
}

function labelMessage(label) {
  return state.labels.has(label) ? null : `No item has label “${label}”.`;
}

// -- browsing ----------------------------------------------------------------------

function browse(label) {
  state.mode = "browse";
  document.body.dataset.mode = "browse";
  $("current").hidden = true;
  releaseImages();
  $("results").replaceChildren();
  state.browse = { offset: 0, shown: 0, total: 0, label };
  return browsePage();
}

async function browsePage() {
  const seq = ++state.seq;
  const b = state.browse;
  document.body.dataset.busy = "1";
  const q = new URLSearchParams({ offset: String(b.offset), limit: String(PAGE) });
  if (b.label) q.set("label", b.label);
  try {
    const data = await api(`/items?${q}`);
    if (seq !== state.seq) return;
    for (const item of data.items) $("results").append(card(item));
    b.offset += data.items.length;
    b.shown += data.items.length;
    b.total = data.total;
    const more = $("more");
    more.textContent = "More items";
    more.hidden = b.shown >= b.total || data.items.length === 0;
    const of = b.label ? ` labelled “${b.label}”` : "";
    if (b.label && labelMessage(b.label) && b.total === 0) status(labelMessage(b.label), true);
    else if (b.total === 0) status("The collection is empty.");
    else status(`Showing ${b.shown} of ${b.total} items${of}. Open one, or search by an image.`);
    if (state.notice) status(state.notice, true);
    state.notice = null;
  } catch (err) {
    if (seq === state.seq) status(err.message, true);
  }
  if (seq === state.seq) done();
}

// -- searching ---------------------------------------------------------------------

function searchId(id) {
  navigate(Object.assign(controls(), { id }));
  window.scrollTo({ top: 0 });
}

function searchText(text) {
  navigate(Object.assign(controls(), { text }));
  window.scrollTo({ top: 0 });
}

function showQuery(title, detail, imageUrl) {
  $("current").hidden = false;
  $("query-title").textContent = title;
  $("query-detail").textContent = detail || "";
  const img = $("query-image");
  img.hidden = !imageUrl;
  if (imageUrl) setImage(img, imageUrl); else img.removeAttribute("src");
}

function runId(p) {
  releaseImages();
  showQuery(p.id, "more like this", `/items/${encodeURIComponent(p.id)}/thumbnail`);
  const q = new URLSearchParams({ k: String(p.k) });
  if (p.label) q.set("label", p.label);
  if (p.threshold) q.set("threshold", String(p.threshold));
  if (p.where) q.set("where", p.where);
  return search(p, () => api(`/items/${encodeURIComponent(p.id)}/similar?${q}`));
}

function runText(p) {
  releaseImages();
  showQuery(`“${p.text}”`, "text search", null);
  const body = { text: p.text, k: p.k, label: p.label, threshold: p.threshold, where: p.where };
  return search(p, () => api("/search", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  }));
}

function runAdhoc(o) {
  const a = state.adhoc;
  $("current").hidden = false;
  $("query-image").hidden = false;
  $("query-title").textContent = a.title;
  $("query-detail").textContent = a.file ? "uploaded image" : "image URL";
  if (a.preview) $("query-image").src = a.preview; else $("query-image").removeAttribute("src");
  let task;
  if (a.file) {
    const form = new FormData();
    form.append("file", a.file);
    form.append("k", String(o.k));
    if (o.label) form.append("label", o.label);
    if (o.threshold) form.append("threshold", String(o.threshold));
    if (o.where) form.append("where", o.where);
    task = () => api("/search", { method: "POST", body: form });
  } else {
    const body = { url: a.url, k: o.k, label: o.label, threshold: o.threshold, where: o.where };
    task = () => api("/search", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  }
  return search(o, task);
}

async function search(p, task) {
  state.mode = "search";
  document.body.dataset.mode = "search";
  state.lastK = p.k;
  const seq = ++state.seq;
  document.body.dataset.busy = "1";
  status("Searching…");
  const list = $("results");
  try {
    const data = await task();
    if (seq !== state.seq) return;
    const results = data.results || [];
    list.replaceChildren(...results.map(card));
    const more = $("more");
    more.textContent = "More results";
    more.hidden = results.length < p.k || p.k >= state.maxK;
    if (results.length) {
      status(`${results.length} results in ${data.took_ms} ms`);
    } else if (p.label && labelMessage(p.label)) {
      status(labelMessage(p.label), true);
    } else if (p.where) {
      status(`No ${p.text ? "item" : "other item"} matches the filter ${p.where}.`);
    } else if (p.threshold) {
      status(`No result scores ${p.threshold.toFixed(2)} or more: lower the minimum score.`);
    } else {
      const other = p.text ? "No item" : "No other item";
      status(p.label ? `${other} has label “${p.label}”.` : "No results.");
    }
  } catch (err) {
    if (seq !== state.seq) return;
    list.replaceChildren();
    $("more").hidden = true;
    status(err.message.replace(/\s+/g, " "), true); // one line (a filter's error names its column)
  }
  done();
}

function startAdhoc(a) {
  if (state.adhoc && state.adhoc.preview) URL.revokeObjectURL(state.adhoc.preview);
  state.adhoc = Object.assign({ n: ++state.adhocN }, a);
  const o = controls();
  history.pushState({ adhoc: state.adhoc.n }, "", address({ label: o.label }));
  releaseImages();
  return runAdhoc(o);
}

function searchFile(file) {
  if (!file) return;
  startAdhoc({ file, title: file.name || "uploaded image", preview: URL.createObjectURL(file) });
}

// A control changed: the current search (or the browse grid) follows.
function refine(replace) {
  const o = controls();
  if (state.mode === "search" && history.state && history.state.adhoc) {
    history.replaceState(history.state, "", address({ label: o.label }));
    return runAdhoc(o);
  }
  const p = params();
  if (state.mode === "search" && (p.id || p.text)) {
    return navigate(Object.assign(o, { id: p.id, text: p.text }), replace);
  }
  if (o.label !== p.label) navigate({ label: o.label }, false);
  return undefined;
}

// The filter box: Enter applies it (an empty box removes the filter), and emptying it
// (typing it away, or the box's clear button) removes it at once.
function applyWhere() {
  const p = params();
  const where = controls().where;
  const adhoc = state.mode === "search" && history.state && history.state.adhoc;
  if (!adhoc && !p.id && !p.text) {
    if (where) status("The filter applies to a search: open an image's “More like this”, or search by an image or words.");
    return undefined;
  }
  if (!adhoc && where === p.where) return undefined; // already applied
  return refine(false);
}

function more() {
  if (state.mode === "browse") { browsePage(); return; }
  $("k-input").value = String(Math.min(state.lastK + STEP, state.maxK));
  refine(true);
}

// -- start -------------------------------------------------------------------------

async function loadLabels() {
  const data = await api("/labels");
  state.labels = new Map(data.labels.map((l) => [l.label, l.count]));
  state.total = data.total;
  const select = $("label-select");
  const opts = [new Option(`All labels (${data.total})`, "")];
  for (const l of data.labels) opts.push(new Option(`${l.label} (${l.count})`, l.label));
  select.replaceChildren(...opts);
}

function setup() {
  const drop = $("drop");
  const input = $("file-input");
  input.addEventListener("change", () => { searchFile(input.files[0]); input.value = ""; });
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const ev of ["dragleave", "drop"]) {
    drop.addEventListener(ev, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) searchFile(file);
  });
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); }
  });
  $("url-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const url = $("url-input").value.trim();
    if (url) startAdhoc({ url, title: url, preview: null });
  });
  $("text-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("text-input").value.trim();
    if (text && !$("text-input").disabled) searchText(text);
  });
  $("label-select").addEventListener("change", () => refine(false));
  $("threshold").addEventListener("input", showThreshold);
  $("threshold").addEventListener("change", () => refine(true));
  $("k-input").addEventListener("change", () => refine(true));
  $("where-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); applyWhere(); }
  });
  $("where-input").addEventListener("input", (e) => { if (!e.target.value.trim()) applyWhere(); });
  $("more").addEventListener("click", more);
  $("browse-button").addEventListener("click", () => navigate({ label: controls().label }));
  $("home").addEventListener("click", (e) => { e.preventDefault(); navigate({}); });
  $("viewer-close").addEventListener("click", () => $("viewer").close());
  $("viewer").addEventListener("close", closed);
  $("viewer").addEventListener("click", (e) => { if (e.target === $("viewer")) $("viewer").close(); });
  window.addEventListener("popstate", () => { if ($("viewer").open) $("viewer").close(); route(); });
  $("key-input").value = apiKey();
  $("key-input").addEventListener("change", (e) => {
    sessionStorage.setItem("lookalike-key", e.target.value);
    start();
  });
  start();
}

function textBox(on) {
  const why = "this collection's model has no text tower";
  for (const id of ["text-input", "text-button"]) $(id).disabled = !on;
  $("text-input").placeholder = on ? "e.g. red dress" : why;
  $("text-input").title = on ? "" : why;
  $("text-note").hidden = on;
  $("text-note").textContent = on ? "" : `Text search is off: ${why}.`;
}

async function start() {
  try {
    const h = await (await fetch("/health")).json();
    state.auth = h.auth || "off";
    state.maxK = h.max_k || 1000;
    $("k-input").max = String(state.maxK);
    $("url-form").hidden = !h.url_fetching;
    textBox(h.text_search !== false); // not told (--api-key-all): let the server answer
    $("key-box").hidden = state.auth !== "all";
    if (h.items !== undefined) $("about").textContent = `${h.items} images · model ${h.model}`;
    await loadLabels();
  } catch (err) {
    status(err.message === "Failed to fetch" ? "The server did not answer." : err.message, true);
    document.body.dataset.ready = "1";
    return;
  }
  document.body.dataset.ready = "1";
  route();
}

document.addEventListener("DOMContentLoaded", setup);
