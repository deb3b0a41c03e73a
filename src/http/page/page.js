// The dump page: signs in with the caller's credential, lists the sources and a source's
// catalog, and sends the same POST /v1alpha1/pg_dump that curl or `pgdump-api dump` would.
// No framework and no third-party code; everything it calls is this server's own API.
"use strict";

const PREVIEW_BYTES = 64 * 1024;
const STORAGE_KEY = "pgdump-api.credential";

const $ = (id) => document.getElementById(id);

const state = {
  credential: null, // { kind: "secret" | "bearer" | "none", value: string }
  sources: [],
  catalog: null, // { source, schemas: [...] }
  running: null, // AbortController of the dump in flight
};

// ---- credentials ---------------------------------------------------------------------

function authHeaders() {
  const c = state.credential;
  if (!c || c.kind === "none") return {};
  if (c.kind === "bearer") return { Authorization: "Bearer " + c.value };
  return { "X-Hasura-Admin-Secret": c.value };
}

function saveCredential(credential) {
  state.credential = credential;
  if (credential) sessionStorage.setItem(STORAGE_KEY, JSON.stringify(credential));
  else sessionStorage.removeItem(STORAGE_KEY);
}

function loadCredential() {
  try {
    return JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "null");
  } catch (_) {
    return null;
  }
}

function showCredentialField() {
  const kind = $("auth-kind").value;
  $("credential-field").hidden = kind === "none";
  $("credential-label").textContent = kind === "bearer" ? "Token" : "Admin secret";
}

// ---- talking to the server -------------------------------------------------------------

// Fetches `path`; resolves to the response when it is 2xx, else throws an ApiFailure with the
// server's error body.
async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    credentials: "same-origin",
    headers: { ...authHeaders(), ...(options.headers || {}) },
  });
  if (!response.ok) throw await ApiFailure.from(response);
  return response;
}

class ApiFailure extends Error {
  constructor(status, body, requestId) {
    const code = body && body.code ? body.code : "http-" + status;
    const text = body && body.error ? body.error : "the server answered " + status;
    super(code + ": " + text);
    this.status = status;
    this.body = body;
    this.requestId = requestId;
  }

  static async from(response) {
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    return new ApiFailure(response.status, body, response.headers.get("x-request-id"));
  }
}

function showError(err) {
  const box = $("error");
  box.hidden = false;
  if (err instanceof ApiFailure) {
    let message = err.status + " " + err.message;
    if (err.body && err.body.path && err.body.path !== "$") message += " (at " + err.body.path + ")";
    if (err.requestId) message += " — request " + err.requestId;
    $("error-message").textContent = message;
    const internal = err.body && err.body.internal;
    $("error-detail").hidden = !internal;
    $("error-detail").textContent = internal
      ? typeof internal === "string" ? internal : JSON.stringify(internal, null, 2)
      : "";
  } else {
    $("error-message").textContent = String(err && err.message ? err.message : err);
    $("error-detail").hidden = true;
  }
}

function clearError() {
  $("error").hidden = true;
}

// ---- sign in, sources, catalog ----------------------------------------------------------

async function signIn(credential) {
  clearError();
  saveCredential(credential);
  try {
    const response = await api("../v1alpha1/pg_dump/sources");
    state.sources = (await response.json()).sources;
  } catch (err) {
    saveCredential(null);
    showError(err);
    return;
  }
  showSignedIn(true);
  $("credential").value = "";
  const select = $("source");
  select.replaceChildren();
  for (const source of state.sources) {
    const option = document.createElement("option");
    option.value = source.name;
    option.textContent = source.name + (source.dumpable ? "" : " (" + (source.error || source.kind) + ")");
    option.disabled = !source.dumpable;
    select.append(option);
  }
  const first = state.sources.find((s) => s.dumpable);
  if (first) {
    select.value = first.name;
    await loadCatalog(first.name);
  }
  select.focus();
}

function signOut() {
  saveCredential(null);
  if (state.running) state.running.abort();
  showSignedIn(false);
  $("preview-section").hidden = true;
  clearError();
  $("credential").focus();
}

// Signed in, the form shrinks to one line saying with what, and a way out.
function showSignedIn(yes) {
  const how = { secret: "the admin secret", bearer: "a bearer token", none: "no credential" };
  $("dump").hidden = !yes;
  $("signin-button").hidden = yes;
  $("signout-button").hidden = !yes;
  for (const id of ["auth-kind-field", "credential-hint"]) $(id).hidden = yes;
  $("credential-field").hidden = yes || $("auth-kind").value === "none";
  $("signed-in").hidden = !yes;
  $("signed-in").textContent = yes ? "Signed in with " + how[state.credential.kind] + "." : "";
  $("signin-title").textContent = yes ? "Signed in" : "Sign in";
}

function describeSource(source) {
  if (!source) return "";
  const parts = [];
  if (source.server_version) parts.push("PostgreSQL " + source.server_version);
  if (source.pg_dump) parts.push("pg_dump " + source.pg_dump + " would run");
  if (source.error) parts.push(source.error);
  return parts.join(" · ");
}

async function loadCatalog(name) {
  clearError();
  const source = state.sources.find((s) => s.name === name);
  $("source-info").textContent = describeSource(source);
  const box = $("catalog");
  box.replaceChildren(note("Reading the catalog of " + name + "…"));
  state.catalog = null;
  try {
    const response = await api("../v1alpha1/pg_dump/catalog", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ source: name }),
    });
    state.catalog = await response.json();
  } catch (err) {
    box.replaceChildren(note("The catalog could not be read."));
    showError(err);
    return;
  }
  renderCatalog();
}

function note(text) {
  const p = document.createElement("p");
  p.className = "hint";
  p.textContent = text;
  return p;
}

function formatBytes(n) {
  if (n === undefined || n === null) return "";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i += 1;
  }
  return (i === 0 ? String(v) : v.toFixed(1)) + " " + units[i];
}

function renderCatalog() {
  const box = $("catalog");
  box.replaceChildren();
  const schemas = state.catalog.schemas;
  if (schemas.length === 0) box.append(note("This database has no schemas of its own."));
  schemas.forEach((schema, s) => {
    const group = document.createElement("div");
    group.className = "schema";
    group.dataset.schema = schema.name;
    const head = document.createElement("label");
    head.className = "schema-head";
    const all = document.createElement("input");
    all.type = "checkbox";
    all.id = "schema-" + s;
    all.dataset.schema = schema.name;
    all.className = "schema-box";
    head.append(all, " " + schema.name);
    const counts = document.createElement("span");
    counts.className = "meta";
    counts.textContent =
      "schema · " + schema.tables.length + " tables, " + schema.views.length + " views, " +
      schema.sequences.length + " sequences, " + schema.functions.length + " functions";
    head.append(counts);
    group.append(head);
    const list = document.createElement("ul");
    const relations = [...schema.tables, ...schema.views, ...schema.sequences];
    relations.forEach((relation, r) => {
      const item = document.createElement("li");
      item.dataset.search = (schema.name + "." + relation.name).toLowerCase();
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.id = "rel-" + s + "-" + r;
      box.className = "relation-box";
      box.dataset.schema = schema.name;
      box.dataset.name = relation.name;
      label.append(box, " " + relation.name);
      const meta = document.createElement("span");
      meta.className = "meta";
      const bits = [relation.kind];
      if (relation.rows !== undefined) bits.push("~" + relation.rows.toLocaleString() + " rows");
      if (relation.bytes !== undefined) bits.push(formatBytes(relation.bytes));
      meta.textContent = bits.join(" · ");
      label.append(meta);
      item.append(label);
      list.append(item);
    });
    group.append(list);
    box.append(group);
  });
  applyFilter();
  updateSummary();
}

function applyFilter() {
  const needle = $("filter").value.trim().toLowerCase();
  for (const group of document.querySelectorAll("#catalog .schema")) {
    let shown = 0;
    for (const item of group.querySelectorAll("li")) {
      const hit = !needle || item.dataset.search.includes(needle);
      item.hidden = !hit;
      if (hit) shown += 1;
    }
    const schemaHit = !needle || group.dataset.schema.toLowerCase().includes(needle);
    group.hidden = !schemaHit && shown === 0;
    if (schemaHit && needle) for (const item of group.querySelectorAll("li")) item.hidden = false;
  }
}

function onCatalogChange(event) {
  const box = event.target;
  if (box.classList.contains("schema-box")) {
    for (const child of box.closest(".schema").querySelectorAll(".relation-box")) {
      child.checked = box.checked;
    }
  } else if (box.classList.contains("relation-box") && !box.checked) {
    // A schema with one of its relations left out is no longer dumped whole.
    const whole = box.closest(".schema").querySelector(".schema-box");
    whole.checked = false;
  }
  updateSummary();
}

function selectShown(checked) {
  for (const group of document.querySelectorAll("#catalog .schema")) {
    if (group.hidden) continue;
    const items = [...group.querySelectorAll("li")];
    const everyShown = items.every((item) => !item.hidden);
    for (const item of items) {
      if (!item.hidden) item.querySelector(".relation-box").checked = checked;
    }
    const whole = group.querySelector(".schema-box");
    if (!checked) whole.checked = false;
    else if (everyShown) whole.checked = true;
  }
  updateSummary();
}

// ---- the request ------------------------------------------------------------------------

// A name as a pg_dump pattern that matches only itself: double-quoted, quotes doubled.
function quoteName(name) {
  return '"' + name.replaceAll('"', '""') + '"';
}

// Whole schemas and single relations chosen. pg_dump ignores --schema once any --table is
// given, so when single relations are chosen, whole schemas are sent as their relations.
function selection() {
  const schemas = [...document.querySelectorAll("#catalog .schema-box:checked")].map(
    (box) => box.dataset.schema,
  );
  const relations = [...document.querySelectorAll("#catalog .relation-box:checked")].map(
    (box) => ({ schema: box.dataset.schema, name: box.dataset.name }),
  );
  const loose = relations.filter((r) => !schemas.includes(r.schema));
  if (loose.length === 0) return { schemas, relations: [], expanded: false };
  return { schemas: [], relations, expanded: schemas.length > 0 };
}

function updateSummary() {
  const chosen = selection();
  let text;
  if (chosen.schemas.length === 0 && chosen.relations.length === 0) {
    text = "Nothing selected: the whole database.";
  } else if (chosen.relations.length === 0) {
    text = "Whole schemas: " + chosen.schemas.join(", ") + ".";
  } else {
    text = chosen.relations.length + " tables, views or sequences selected.";
    if (chosen.expanded) {
      text += " Whole schemas are dumped as their tables here (no functions or types): pg_dump ignores schemas when single tables are chosen.";
    }
  }
  $("selection-summary").textContent = text;
}

function choice(name) {
  return document.querySelector('input[name="' + name + '"]:checked').value;
}

function currentRequest() {
  const opts = [];
  const chosen = selection();
  for (const schema of chosen.schemas) opts.push("--schema=" + quoteName(schema));
  for (const r of chosen.relations) opts.push("--table=" + quoteName(r.schema) + "." + quoteName(r.name));
  const content = choice("content");
  if (content === "schema") opts.push("--schema-only");
  if (content === "data") opts.push("--data-only");
  const rows = choice("rows");
  if (content !== "schema" && rows !== "copy") opts.push("--" + rows);
  if (!$("owner").checked) opts.push("--no-owner");
  if (!$("privileges").checked) opts.push("--no-privileges");
  const custom = choice("format") === "custom";
  if (custom) opts.push("--format=custom");
  const gzip = !custom && $("gzip").checked;
  if (gzip) opts.push("--compress=6");
  const clean = !custom && !gzip && $("clean").checked;
  const body = { source: $("source").value, opts };
  if (clean) body.clean_output = true;
  return { body, text: !custom && !gzip, extension: custom ? ".dump" : gzip ? ".sql.gz" : ".sql" };
}

function syncOptions() {
  const custom = choice("format") === "custom";
  $("gzip").disabled = custom;
  $("clean").disabled = custom || $("gzip").checked;
  $("data-as").disabled = choice("content") === "schema";
  $("preview-button").disabled = !!state.running || custom || $("gzip").checked;
}

function fileName(request) {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "");
  const safe = request.body.source.replace(/[^A-Za-z0-9_.-]/g, "_");
  return safe + "-" + stamp + request.extension;
}

// ---- preview and download ---------------------------------------------------------------

function startDump(request) {
  const controller = new AbortController();
  state.running = controller;
  $("cancel-button").disabled = false;
  $("download-button").disabled = true;
  syncOptions();
  const done = () => {
    state.running = null;
    $("cancel-button").disabled = true;
    $("download-button").disabled = false;
    syncOptions();
  };
  const response = api("../v1alpha1/pg_dump", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(request.body),
    signal: controller.signal,
  });
  return { controller, response, done };
}

async function preview() {
  clearError();
  const request = currentRequest();
  const { controller, response, done } = startDump(request);
  const chunks = [];
  let size = 0;
  let cut = false;
  try {
    const reader = (await response).body.getReader();
    while (size < PREVIEW_BYTES) {
      const { value, done: end } = await reader.read();
      if (end) break;
      chunks.push(value);
      size += value.length;
    }
    if (size >= PREVIEW_BYTES) {
      cut = true;
      // Enough for a preview: stop the dump (the server stops pg_dump when we go).
      controller.abort();
    }
  } catch (err) {
    if (err.name !== "AbortError") {
      done();
      showError(err);
      return;
    }
  }
  done();
  const bytes = new Uint8Array(Math.min(size, PREVIEW_BYTES));
  let at = 0;
  for (const chunk of chunks) {
    const part = chunk.subarray(0, bytes.length - at);
    bytes.set(part, at);
    at += part.length;
    if (at >= bytes.length) break;
  }
  $("preview").textContent = new TextDecoder("utf-8").decode(bytes);
  $("preview-note").textContent = cut
    ? "The first 64 KiB; the dump was stopped there."
    : "The whole dump (" + formatBytes(size) + ").";
  $("preview-section").hidden = false;
  $("preview-section").scrollIntoView({ block: "start" });
  $("progress").textContent = "";
}

function showProgress(received, started, final) {
  const seconds = Math.max((performance.now() - started) / 1000, 0.001);
  const rate = formatBytes(Math.round(received / seconds)) + "/s";
  const prefix = final ? "Done: " : "Receiving: ";
  $("progress").textContent =
    prefix + formatBytes(received) + " · " + rate + " · " + seconds.toFixed(1) + " s";
}

async function download() {
  clearError();
  const request = currentRequest();
  const name = fileName(request);
  // Where the browser can write a file as it arrives, ask for it first (a click is needed).
  let sink = null;
  if (window.showSaveFilePicker && $("stream-to-disk").checked) {
    try {
      const handle = await window.showSaveFilePicker({ suggestedName: name });
      sink = await handle.createWritable();
    } catch (err) {
      if (err.name === "AbortError") return;
      throw err;
    }
  }
  const { controller, response, done } = startDump(request);
  const chunks = [];
  let received = 0;
  const started = performance.now();
  let ticker = null;
  try {
    const reader = (await response).body.getReader();
    ticker = setInterval(() => showProgress(received, started, false), 250);
    for (;;) {
      const { value, done: end } = await reader.read();
      if (end) break;
      received += value.length;
      if (sink) await sink.write(value);
      else chunks.push(value);
    }
    clearInterval(ticker);
    if (sink) await sink.close();
    else save(new Blob(chunks, { type: request.text ? "application/sql" : "application/octet-stream" }), name);
    showProgress(received, started, true);
    $("progress").textContent += " · saved as " + name;
  } catch (err) {
    clearInterval(ticker);
    if (sink) await sink.abort().catch(() => {});
    if (err.name === "AbortError" || controller.signal.aborted) {
      $("progress").textContent = "Cancelled after " + formatBytes(received) + "; the server stopped pg_dump.";
    } else if (err instanceof ApiFailure) {
      showError(err);
      $("progress").textContent = "";
    } else {
      showError(new Error("The dump was cut short after " + formatBytes(received) +
        " (" + err.message + "); nothing was saved. The server's log says why."));
      $("progress").textContent = "";
    }
  } finally {
    done();
  }
}

function save(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

function cancel() {
  if (state.running) state.running.abort();
}

// ---- copy as … ------------------------------------------------------------------------

// A word for a POSIX shell, in single quotes.
function shellWord(word) {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : "'" + word.replaceAll("'", "'\\''") + "'";
}

function credentialFlag() {
  const kind = state.credential ? state.credential.kind : "none";
  if (kind === "secret") return ["-H", '"X-Hasura-Admin-Secret: $HASURA_GRAPHQL_ADMIN_SECRET"'];
  if (kind === "bearer") return ["-H", '"Authorization: Bearer $TOKEN"'];
  return [];
}

function asCurl() {
  const request = currentRequest();
  const url = new URL("../v1alpha1/pg_dump", location.href).href;
  const words = ["curl", "--fail-with-body", "-sS", "-X", "POST", shellWord(url),
    "-H", shellWord("Content-Type: application/json"), ...credentialFlag(),
    "--data-raw", shellWord(JSON.stringify(request.body)), "-o", shellWord(fileName(request))];
  return join(words);
}

function asCli() {
  const request = currentRequest();
  const kind = state.credential ? state.credential.kind : "none";
  const words = ["pgdump-api", "dump", "--endpoint", shellWord(location.origin),
    "--source", shellWord(request.body.source)];
  if (kind === "bearer") words.push("-H", '"Authorization: Bearer $TOKEN"');
  if (request.body.clean_output) words.push("--clean");
  words.push("-o", shellWord(fileName(request)));
  if (request.body.opts.length > 0) words.push("--", ...request.body.opts.map(shellWord));
  const prefix = kind === "secret" ? "# reads the secret from $HASURA_GRAPHQL_ADMIN_SECRET\n" : "";
  return prefix + join(words);
}

function join(words) {
  // One argument per line after the first few, for reading.
  return words.join(" ").replace(/ (-H|--data-raw|-o|--) /g, " \\\n  $1 ");
}

async function copy(text) {
  $("command-field").hidden = false;
  $("command").value = text;
  try {
    await navigator.clipboard.writeText(text);
    $("progress").textContent = "Copied to the clipboard.";
  } catch (_) {
    $("command").focus();
    $("command").select();
    $("progress").textContent = "Select and copy the command below.";
  }
}

// ---- wiring -------------------------------------------------------------------------------

function init() {
  $("auth-kind").addEventListener("change", showCredentialField);
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const kind = $("auth-kind").value;
    signIn({ kind, value: kind === "none" ? "" : $("credential").value });
  });
  $("signout-button").addEventListener("click", signOut);
  $("source").addEventListener("change", () => loadCatalog($("source").value));
  $("filter").addEventListener("input", applyFilter);
  $("select-all").addEventListener("click", () => selectShown(true));
  $("select-none").addEventListener("click", () => selectShown(false));
  $("catalog").addEventListener("change", onCatalogChange);
  for (const input of document.querySelectorAll(".options input")) {
    input.addEventListener("change", syncOptions);
  }
  $("preview-button").addEventListener("click", () => preview().catch(showError));
  $("download-button").addEventListener("click", () => download().catch(showError));
  $("cancel-button").addEventListener("click", cancel);
  $("copy-curl").addEventListener("click", () => copy(asCurl()));
  $("copy-cli").addEventListener("click", () => copy(asCli()));
  $("stream-to-disk-label").hidden = !window.showSaveFilePicker;
  showCredentialField();
  syncOptions();
  const saved = loadCredential();
  if (saved) {
    $("auth-kind").value = saved.kind;
    showCredentialField();
    signIn(saved);
  } else {
    $("credential").focus();
  }
}

init();
