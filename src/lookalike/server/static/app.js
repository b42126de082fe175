// The lookalike search page: no framework, no CDN, talks only to this server's API.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { auth: "off", objectUrls: [] };

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

function options() {
  const k = Math.max(1, Math.min(100, parseInt($("k-input").value, 10) || 12));
  const label = $("label-input").value.trim();
  return { k, label: label || null };
}

function releaseImages() {
  state.objectUrls.forEach((u) => URL.revokeObjectURL(u));
  state.objectUrls = [];
}

// With --api-key-all, images need the key too: fetch them and show blob URLs.
function setImage(img, url) {
  if (state.auth !== "all") { img.src = url; return; }
  fetch(url, { headers: headers() })
    .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(r.status))))
    .then((b) => { const u = URL.createObjectURL(b); state.objectUrls.push(u); img.src = u; })
    .catch(() => {});
}

function showQuery(title, detail, imageUrl) {
  $("current").hidden = false;
  $("query-title").textContent = title;
  $("query-detail").textContent = detail || "";
  const img = $("query-image");
  if (imageUrl) setImage(img, imageUrl); else img.removeAttribute("src");
}

function render(data) {
  const list = $("results");
  list.replaceChildren();
  const results = data.results || [];
  for (const hit of results) {
    const li = document.createElement("li");
    li.className = "result";
    li.dataset.id = hit.id;
    const btn = document.createElement("button");
    btn.type = "button";
    btn.title = `More like ${hit.id}`;
    const img = document.createElement("img");
    img.loading = "lazy";
    img.alt = hit.label ? `${hit.label}: ${hit.id}` : hit.id;
    setImage(img, hit.thumbnail_url);
    const meta = document.createElement("div");
    meta.className = "meta";
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = Number(hit.score).toFixed(3);
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = hit.label || "";
    const id = document.createElement("span");
    id.className = "id";
    id.textContent = hit.id;
    meta.append(score, label, id);
    btn.append(img, meta);
    btn.addEventListener("click", () => moreLike(hit));
    li.append(btn);
    list.append(li);
  }
  status(results.length ? `${results.length} results in ${data.took_ms} ms` : "No results.");
}

async function run(task) {
  status("Searching…");
  try {
    render(await task());
  } catch (err) {
    $("results").replaceChildren();
    status(err.message, true);
  }
}

function searchFile(file) {
  if (!file) return;
  releaseImages();
  const preview = URL.createObjectURL(file);
  state.objectUrls.push(preview);
  $("current").hidden = false;
  $("query-title").textContent = file.name || "uploaded image";
  $("query-detail").textContent = "uploaded image";
  $("query-image").src = preview;
  const o = options();
  const form = new FormData();
  form.append("file", file);
  form.append("k", String(o.k));
  if (o.label) form.append("label", o.label);
  run(() => api("/search", { method: "POST", body: form }));
}

function searchUrl(url) {
  releaseImages();
  showQuery(url, "image URL", null);
  const o = options();
  run(() => api("/search", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ url, k: o.k, label: o.label }),
  }));
}

function moreLike(hit) {
  releaseImages();
  showQuery(hit.id, `more like this${hit.label ? " · " + hit.label : ""}`, hit.thumbnail_url);
  const o = options();
  const params = new URLSearchParams({ k: String(o.k) });
  if (o.label) params.set("label", o.label);
  const path = `/items/${encodeURIComponent(hit.id)}/similar?${params}`;
  run(() => api(path));
  window.scrollTo({ top: 0, behavior: "smooth" });
}

function setup() {
  const drop = $("drop");
  const input = $("file-input");
  input.addEventListener("change", () => searchFile(input.files[0]));
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
    if (url) searchUrl(url);
  });
  $("key-input").value = apiKey();
  $("key-input").addEventListener("change", (e) => {
    sessionStorage.setItem("lookalike-key", e.target.value);
  });
  fetch("/health").then((r) => r.json()).then((h) => {
    state.auth = h.auth || "off";
    $("url-form").hidden = !h.url_fetching;
    $("key-box").hidden = state.auth !== "all";
    if (h.items !== undefined) {
      $("about").textContent = `${h.items} images · model ${h.model}`;
    }
    document.body.dataset.ready = "1";
  }).catch(() => status("The server did not answer.", true));
}

document.addEventListener("DOMContentLoaded", setup);
