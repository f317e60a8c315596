"use strict";
// The data review page: a page of examples at a time, one shown in full; decisions go to the server at once.
const pager = new Pager(50);
let meta = null;
let editing = false;
let draft = [];
let validateTimer = null;
let lastValidation = null;

const $ = id => document.getElementById(id);

function filters() {
  return {code: $("f-code").value, decision: $("f-decision").value, q: $("f-q").value.trim()};
}

async function loadMeta() {
  meta = await api("/api/meta");
  $("file").textContent = meta.file;
  const d = meta.decisions;
  $("counts").textContent = `${meta.examples} examples · ${d.accept} accepted · ${d.reject} rejected · ` +
    `${d.edit} edited · ${d.undecided} undecided` + (meta.negatives ? ` · ${meta.negatives} negatives from evaluations` : "") +
    ` · tokens: ${meta.tokenizer} · decisions saved in ${meta.review_file}`;
  issueList($("file-issues"), meta.file_issues);
  const stale = $("stale");
  const notes = [];
  if (meta.moved) notes.push(`${meta.moved} decisions followed their example to a new line (the data file changed).`);
  if (meta.stale.length) notes.push(`${meta.stale.length} decisions no longer apply (their example changed or is gone): ` +
    meta.stale.map(s => `line ${s.line} (${s.action})`).join(", "));
  if (meta.repaired) notes.push(meta.repaired + ".");
  if (meta.unreadable_records?.length) notes.push(`${meta.review_file}: unreadable lines ` +
    `${meta.unreadable_records.join(", ")} were skipped.`);
  stale.hidden = !notes.length;
  stale.textContent = notes.join(" ");
  const select = $("f-code");
  const chosen = select.value;
  for (const option of [...select.options]) if (!["", "any", "none"].includes(option.value)) option.remove();
  for (const [code, n] of Object.entries(meta.codes).sort()) select.append(el("option", {value: code, text: `${code} (${n})`}));
  select.value = chosen;
  $("edit").disabled = !meta.editable;
}

async function loadPage(start, pick, around) {
  const f = filters();
  const query = `/api/items?start=${start}&size=${pager.size}&code=${encodeURIComponent(f.code)}` +
    `&decision=${encodeURIComponent(f.decision)}&q=${encodeURIComponent(f.q)}` + (around ? `&around=${around}` : "");
  const page = await api(query);
  pager.start = page.start; pager.total = page.total; pager.items = page.items;
  if (around) pick = page.current;
  pager.cur = pick === "last" ? Math.max(0, page.items.length - 1) : Math.min(pick || 0, Math.max(0, page.items.length - 1));
  $("range").textContent = pager.range();
  renderList();
  show();
}

function badge(decision) {
  const action = decision ? decision.action : "undecided";
  return el("span", {class: "badge " + action, text: action});
}

function renderList() {
  $("list").replaceChildren(...pager.items.map((item, n) => {
    const errors = item.issues.filter(i => i.severity === "error").length;
    const warnings = item.issues.length - errors;
    const li = el("li", {class: "item" + (n === pager.cur ? " current" : ""), "data-line": item.line},
      el("span", {class: "line", text: item.line}), badge(item.decision),
      item.suspect ? el("span", {class: "count suspect-rank", text: `#${item.suspect.rank}`}) : null,
      errors ? el("span", {class: "count error", text: `${errors}E`}) : null,
      warnings ? el("span", {class: "count warning", text: `${warnings}W`}) : null,
      el("span", {class: "preview", text: item.preview}));
    li.addEventListener("click", () => { if (!editing) { pager.cur = n; renderList(); show(); } });
    return li;
  }));
  const current = $("list").querySelector(".current");
  if (current) current.scrollIntoView({block: "nearest"});
}

function show() {
  const item = pager.item;
  $("detail").hidden = !item;
  if (!item) { status("no example matches these filters"); return; }
  const action = item.decision ? item.decision.action : "undecided";
  $("title").textContent = `line ${item.line}`;
  $("decision").textContent = action + (item.decision && item.decision.moved_from ? ` (recorded at line ${item.decision.moved_from})` : "");
  $("decision").className = "badge " + action;
  $("tokens").textContent = item.tokens === null ? "" : `${item.tokens} tokens`;
  $("cluster").textContent = item.cluster ? `${item.cluster.kind} duplicates: lines ${item.cluster.lines.join(", ")}` : "";
  issueList($("issues"), item.issues);
  const suspect = item.suspect;
  $("suspect").hidden = !suspect;
  $("suspect").textContent = suspect ? `suspect #${suspect.rank} (score ${suspect.score.toFixed(3)}): the tuned ` +
    `model answered: ${suspect.answer === null ? "(no answer generated)" : suspect.answer}` : "";
  const messages = item.decision && item.decision.action === "edit" ? item.decision.messages : exampleMessages(item);
  $("messages").replaceChildren(item.raw !== null ? el("pre", {class: "raw", text: item.raw}) : renderChat(messages));
  if (item.decision && item.decision.action === "edit") $("messages").prepend(el("div", {class: "edited-note", text: "as edited (the file is unchanged)"}));
  $("note").value = item.decision && item.decision.note ? item.decision.note : "";
}

function exampleMessages(item) {
  const ex = item.example;
  if (!ex || typeof ex !== "object") return [];
  if (Array.isArray(ex.messages)) return ex.messages;
  if (ex.input && Array.isArray(ex.input.messages)) {
    return [...ex.input.messages, ...(ex.preferred_output || []).map(m => ({...m, role: "assistant (preferred)"})),
            ...(ex.non_preferred_output || []).map(m => ({...m, role: "assistant (non-preferred)"}))];
  }
  return [];
}

async function move(step) {
  if (!pager.items.length) return;
  const next = pager.cur + step;
  if (next >= pager.items.length) {
    if (pager.start + pager.items.length < pager.total) await loadPage(pager.start + pager.size, 0);
    return;
  }
  if (next < 0) {
    if (pager.start > 0) await loadPage(Math.max(0, pager.start - pager.size), "last");
    return;
  }
  pager.cur = next;
  renderList();
  show();
}

async function decide(action, messages) {
  const item = pager.item;
  if (!item) return;
  const body = {line: item.line, hash: item.hash, action, note: $("note").value};
  if (messages) body.messages = messages;
  let result;
  try { result = await api("/api/decide", body); } catch (error) { status(error.message, "error"); return false; }
  if (!result.ok) { showValidation(result.validation); status("not saved: the edit has errors", "error"); return false; }
  item.decision = result.decision;
  meta = result.meta || meta;
  await loadMeta();
  status(action === "undo" ? `line ${item.line}: undone (${item.decision ? item.decision.action : "undecided"})`
                           : `line ${item.line}: ${action} saved`, "ok");
  renderList();
  show();
  return true;
}

// ---- the editor ----

function startEdit() {
  const item = pager.item;
  if (!item || !meta.editable) return;
  if (item.raw !== null) { status("this line is not JSON: fix it in the file (the review never writes it)", "error"); return; }
  const source = item.decision && item.decision.action === "edit" ? item.decision.messages : exampleMessages(item);
  draft = JSON.parse(JSON.stringify(source || []));
  editing = true;
  $("editor").hidden = false;
  $("messages").hidden = true;
  renderEditor();
  const first = $("edit-rows").querySelector("textarea");
  if (first) first.focus();
  validateSoon();
}

function renderEditor() {
  $("edit-rows").replaceChildren(...draft.map((m, n) => {
    const role = el("select", {class: "edit-role", "data-index": n},
      ...["system", "developer", "user", "assistant", "tool"].map(r => el("option", {value: r, text: r})));
    if (![...role.options].some(o => o.value === m.role)) role.append(el("option", {value: String(m.role), text: String(m.role)}));
    role.value = String(m.role);
    role.addEventListener("change", () => { draft[n].role = role.value; renderEditor(); validateSoon(); });
    const content = el("textarea", {class: "edit-content", "data-index": n, rows: 3, value: contentText(m.content)});
    content.addEventListener("input", () => { draft[n].content = content.value; validateSoon(); });
    const weight = el("select", {class: "edit-weight", "data-index": n},
      el("option", {value: "", text: "weight: default"}), el("option", {value: "1", text: "weight 1"}),
      el("option", {value: "0", text: "weight 0"}));
    weight.value = m.weight === undefined ? "" : String(m.weight);
    weight.addEventListener("change", () => {
      if (weight.value === "") delete draft[n].weight; else draft[n].weight = Number(weight.value);
      validateSoon();
    });
    const remove = el("button", {type: "button", class: "remove", text: "remove"});
    remove.addEventListener("click", () => { draft.splice(n, 1); renderEditor(); validateSoon(); });
    return el("div", {class: "edit-row"}, role, weight, remove, content);
  }));
}

function validateSoon() {
  clearTimeout(validateTimer);
  validateTimer = setTimeout(validate, 150);
}

async function validate() {
  const item = pager.item;
  if (!item || !editing) return;
  try { showValidation(await api("/api/validate", {line: item.line, messages: draft})); }
  catch (error) { status(error.message, "error"); }
}

function showValidation(result) {
  lastValidation = result;
  issueList($("edit-issues"), result.issues);
  const errors = result.issues.filter(i => i.severity === "error").length;
  $("edit-state").textContent = errors ? `${errors} error(s): fix them to save` :
    `valid${result.tokens !== null ? ` · ${result.tokens} tokens` : ""}`;
  $("edit-state").className = errors ? "invalid" : "valid";
}

function stopEdit() {
  editing = false;
  $("editor").hidden = true;
  $("messages").hidden = false;
  $("edit-issues").replaceChildren();
  $("edit-state").textContent = "";
}

async function saveEdit() {
  clearTimeout(validateTimer);
  if (await decide("edit", draft)) stopEdit();
}

// ---- keys and wiring ----

document.addEventListener("keydown", async event => {
  if (editing) {
    if (event.key === "Escape") { event.preventDefault(); stopEdit(); show(); }
    else if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); await saveEdit(); }
    return;
  }
  if (typing(event)) {
    if (event.key === "Escape") event.target.blur();
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const keys = {
    j: () => move(1), ArrowDown: () => move(1), k: () => move(-1), ArrowUp: () => move(-1),
    a: async () => { if (await decide("accept")) await move(1); },
    r: async () => { if (await decide("reject")) await move(1); },
    e: () => startEdit(), u: () => decide("undo"),
    n: () => $("note").focus(), "/": () => $("f-q").focus(),
    "]": () => nextPage(), "[": () => prevPage(),
    "?": () => { $("help").hidden = !$("help").hidden; },
  };
  const handler = keys[event.key];
  if (handler) { event.preventDefault(); keyQueue = keyQueue.then(handler, handler); await keyQueue; }
});

async function nextPage() { if (pager.start + pager.size < pager.total) await loadPage(pager.start + pager.size, 0); }
async function prevPage() { if (pager.start > 0) await loadPage(Math.max(0, pager.start - pager.size), 0); }

function wire() {
  $("accept").addEventListener("click", async () => { if (await decide("accept")) await move(1); });
  $("reject").addEventListener("click", async () => { if (await decide("reject")) await move(1); });
  $("edit").addEventListener("click", startEdit);
  $("undo").addEventListener("click", () => decide("undo"));
  $("save-edit").addEventListener("click", saveEdit);
  $("cancel-edit").addEventListener("click", () => { stopEdit(); show(); });
  $("add-message").addEventListener("click", () => { draft.push({role: "user", content: ""}); renderEditor(); validateSoon(); });
  $("next-page").addEventListener("click", nextPage);
  $("prev-page").addEventListener("click", prevPage);
  $("help-button").addEventListener("click", () => { $("help").hidden = !$("help").hidden; });
  for (const id of ["f-code", "f-decision"]) $(id).addEventListener("change", () => loadPage(0, 0));
  let searchTimer = null;
  $("f-q").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(() => loadPage(0, 0), 250); });
  $("f-q").addEventListener("keydown", event => { if (event.key === "Enter") { event.preventDefault(); event.target.blur(); } });
}

(async () => {
  wire();
  try {
    await loadMeta();
    await loadPage(0, 0, meta.resume);  // where the person stopped
    document.body.dataset.ready = "1";
  } catch (error) { status(error.message, "error"); }
})();
