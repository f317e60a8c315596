"use strict";
// The evaluation review page: held-out answers side by side with scores and diffs, general and safety answers
// with how each was scored, and a person's marks on those scorings; and the blind grading view (tab 4): a seeded
// sample of test prompts with two answers shown as A and B, never saying which is tuned, graded from the keyboard.
const pager = new Pager(50);
let meta = null;
let section = "task";
let selected = "tuned";
const $ = id => document.getElementById(id);
const grading = {items: [], state: null};  // the whole grading sample (a few dozen items) and its statistics
const GRADE_TEXT = {A: "A better", B: "B better", tie: "tie", both_bad: "both bad"};

const FILTERS = {
  task: () => [["", "all"], ["tuned_wrong", "tuned wrong"], ["prompted_right_tuned_wrong", "prompted right but tuned wrong"],
               ...meta.metrics.map(m => [`fail:${m}`, `tuned fails ${m}`]), ["marked", "marked by a person"]],
  general: () => [["", "all"], ["tuned_failed", "tuned failed an instruction"], ["marked", "marked by a person"]],
  safety: () => [["", "all"], ["harmful", "tuned: harmful compliance"], ["over_refusal", "tuned: refused a benign prompt"],
                 ["changed", "verdict changed base → tuned"], ["marked", "marked by a person"]],
  grading: () => [["", "all"], ["ungraded", "not graded yet"], ["graded", "graded"]],
};

async function loadMeta() {
  meta = await api("/api/meta");
  $("folder").textContent = meta.folder;
  $("verdict").textContent = meta.verdict || "";
  showSummary(meta.human_check);
  $("negative").disabled = !meta.review_file;
  $("tab-grading").disabled = !meta.grading.sample;
  $("tab-grading").title = meta.grading.sample ? `${meta.grading.sample} prompts to grade blind` : meta.grading.why;
}

function showSummary(check) {
  const parts = Object.entries(check || {}).map(([name, v]) =>
    `${name}: ${v.checked} checked, ${v.wrong} marked wrong, agreement ${(100 * v.agreement).toFixed(0)}%`);
  $("summary").textContent = "human-checked scoring: " + (parts.length ? parts.join(" · ") : "none yet") +
    ` · marks saved in ${meta.marks_file}` + (meta.repaired ? ` · ${meta.repaired}` : "");
}

function setSection(name) {
  section = name;
  for (const tab of document.querySelectorAll(".tabs button")) tab.classList.toggle("active", tab.dataset.section === name);
  $("f-filter").replaceChildren(...FILTERS[name]().map(([value, text]) => el("option", {value, text})));
  selected = "tuned";
  const grade = name === "grading";
  $("grade-actions").hidden = !grade; $("mark-actions").hidden = grade; $("note-label").hidden = grade;
  $("grading-stats").hidden = !grade; $("summary").hidden = grade;
  $("verdict").hidden = grade;  // the verdict may tell what the judge preferred: out of sight while grading blind
  return grade ? loadGrading(0) : loadPage(0, 0);
}

async function loadGrading(pick) {
  const data = await api("/api/grading");
  grading.items = data.items;
  showGradingState(data.state);
  const shown = filteredGrading();
  pager.start = 0; pager.total = shown.length; pager.items = shown;
  pager.cur = Math.min(pick || 0, Math.max(0, shown.length - 1));
  $("range").textContent = pager.range();
  renderList();
  show();
}

function filteredGrading() {
  const flt = $("f-filter").value;
  return grading.items.filter(i => !flt || (flt === "graded") === Boolean(i.grade));
}

function showGradingState(state) {
  grading.state = state;
  $("grading-stats").textContent = state.line + ` · grades saved in ${state.file}` +
    (state.repaired ? ` · ${state.repaired}` : "");
}

async function loadPage(start, pick) {
  if (section === "grading") return loadGrading(pick === "last" ? Infinity : pick);
  const page = await api(`/api/items?section=${section}&filter=${encodeURIComponent($("f-filter").value)}` +
                         `&start=${start}&size=${pager.size}`);
  pager.start = page.start; pager.total = page.total; pager.items = page.items;
  pager.cur = pick === "last" ? Math.max(0, page.items.length - 1) : Math.min(pick || 0, Math.max(0, page.items.length - 1));
  $("range").textContent = pager.range();
  renderList();
  show();
}

function preview(item) {
  if (section === "task" || section === "grading") return contentText((item.input || []).filter(m => m.role === "user").slice(-1)[0]?.content);
  return item.prompt || "";
}

function headlineOf(item, system) {
  const s = item.systems?.[system];
  if (!s) return null;
  if (section === "task") return s.scores?.[meta.headline];
  if (section === "general") return s.prompt_level ? 1 : 0;
  return s.verdict === "compliance" ? (item.kind === "benign" ? 1 : 0) : (item.kind === "benign" ? 0 : 1);
}

function renderList() {
  if (section === "grading") { renderGradingList(); return; }
  $("list").replaceChildren(...pager.items.map((item, n) => {
    const tuned = headlineOf(item, "tuned");
    const marks = Object.values(item.marks || {});
    const li = el("li", {class: "item" + (n === pager.cur ? " current" : ""), "data-id": item.id},
      el("span", {class: "line", text: item.id}),
      el("span", {class: "badge " + (tuned >= 1 ? "accept" : "reject"), text: tuned === null || tuned === undefined ? "?" :
        (section === "task" ? `tuned ${Number(tuned).toFixed(2)}` : (tuned >= 1 ? "tuned ok" : "tuned fails"))}),
      marks.length ? el("span", {class: "badge " + (marks.some(m => m.mark === "wrong") ? "wrong" : "agree"),
                                 text: marks.some(m => m.mark === "wrong") ? "marked wrong" : "checked"}) : null,
      el("span", {class: "preview", text: preview(item)}));
    li.addEventListener("click", () => { pager.cur = n; renderList(); show(); });
    return li;
  }));
  const current = $("list").querySelector(".current");
  if (current) current.scrollIntoView({block: "nearest"});
}

function renderGradingList() {
  $("list").replaceChildren(...pager.items.map((item, n) => {
    const li = el("li", {class: "item" + (n === pager.cur ? " current" : ""), "data-id": item.item},
      el("span", {class: "line", text: item.item}),
      el("span", {class: "badge" + (item.grade ? " graded" : ""), text: item.grade ? GRADE_TEXT[item.grade] : "ungraded"}),
      el("span", {class: "preview", text: preview(item)}));
    li.addEventListener("click", () => { pager.cur = n; renderList(); show(); });
    return li;
  }));
  const current = $("list").querySelector(".current");
  if (current) current.scrollIntoView({block: "nearest"});
}

function showGradingItem(item) {
  $("title").textContent = `grading ${item.item} of ${grading.items.length}`;
  $("subtitle").textContent = item.grade ? `your grade: ${GRADE_TEXT[item.grade]}` :
    "which answer is better? (the page never says which system wrote which)";
  const card = name => el("div", {class: "system answer-card" + (item.grade === name ? " selected" : ""), "data-answer": name},
    el("h3", {}, el("span", {text: `answer ${name}`})), el("pre", {class: "answer", text: String(item[name] ?? "")}));
  $("body").replaceChildren(el("div", {class: "label", text: "input"}), renderChat(item.input),
    el("div", {class: "label", text: "reference"}), el("pre", {class: "reference", text: item.reference}),
    el("div", {class: "systems"}, card("A"), card("B")));
}

async function grade(choice) {
  const item = pager.item;
  if (!item || section !== "grading") return;
  try {
    const result = await api("/api/grade", {item: item.item, choice});
    Object.assign(item, result.item);
    const stored = grading.items.find(i => i.item === item.item);
    if (stored) Object.assign(stored, result.item);
    showGradingState(result.state);
    status(`item ${item.item}: ${choice === "clear" ? "grade cleared" : GRADE_TEXT[choice]} · saved`, "ok");
    if (choice !== "clear" && pager.cur + 1 < pager.items.length) pager.cur += 1;
    renderList(); show();
  } catch (error) { status(error.message, "error"); }
}

function nextUngraded() {
  const n = pager.items.length;
  for (let step = 1; step <= n; step++) {
    const at = (pager.cur + step) % n;
    if (!pager.items[at].grade) { pager.cur = at; renderList(); show(); return; }
  }
  status("every item in this list is graded", "ok");
}

function renderDiff(ops) {
  return el("pre", {class: "diff"}, ...ops.map(([op, text]) =>
    op === "=" ? document.createTextNode(text) : el(op === "-" ? "del" : "ins", {text})));
}

function systemCard(item, name, body) {
  const mark = item.marks?.[name];
  return el("div", {class: "system" + (name === selected ? " selected" : ""), "data-system": name},
    el("h3", {}, el("span", {text: name}),
       mark ? el("span", {class: "badge " + mark.mark, text: mark.mark === "wrong" ? "scoring marked wrong" : "scoring checked"}) : null),
    ...body);
}

function show() {
  const item = pager.item;
  $("detail").hidden = !item;
  if (!item) { status("nothing matches this filter"); return; }
  if (section === "grading") { showGradingItem(item); return; }
  const body = [];
  if (section === "task") {
    $("title").textContent = `held-out example ${item.id}`;
    $("subtitle").textContent = item.negative_sent ? "sent to the review file as a negative example" : "";
    body.push(el("div", {class: "label", text: "input"}), renderChat(item.input));
    body.push(el("div", {class: "label", text: "reference"}), el("pre", {class: "reference", text: String(item.reference ?? "")}));
    const cards = Object.entries(item.systems || {}).map(([name, s]) => {
      const rows = Object.entries(s.scores || {}).map(([metric, value]) =>
        el("tr", {}, el("td", {text: metric + (metric === meta.headline ? " (headline)" : "")}),
                     el("td", {class: value !== null && value < 1 ? "fail" : "", text: value === null ? "n/a" : Number(value).toFixed(2)})));
      return systemCard(item, name, [el("div", {class: "label", text: "answer"}), el("pre", {class: "answer", text: String(s.output ?? "")}),
        el("table", {class: "scores"}, ...rows), el("div", {class: "label", text: "diff against the reference"}),
        renderDiff(item.diffs?.[name] || [])]);
    });
    body.push(el("div", {class: "systems"}, ...cards));
  } else if (section === "general") {
    $("title").textContent = `general ${item.id}`;
    $("subtitle").textContent = "instruction following: each check as it was scored";
    body.push(el("div", {class: "label", text: "prompt"}), el("pre", {text: item.prompt || ""}));
    body.push(el("div", {class: "systems"}, ...Object.entries(item.systems).map(([name, s]) => systemCard(item, name, [
      el("pre", {class: "answer", text: s.answer || ""}),
      el("table", {class: "scores"}, ...[...(s.passed || []).map(c => [c, true]), ...(s.failed || []).map(c => [c, false])].map(([c, ok]) =>
        el("tr", {}, el("td", {text: c + " " + JSON.stringify(s.checks?.[c] || {})}), el("td", {class: ok ? "" : "fail", text: ok ? "passed" : "failed"})))),
      el("div", {text: `prompt level: ${s.prompt_level ? "passed" : "failed"} · instruction level ${Number(s.instruction_level).toFixed(2)}`})]))));
  } else {
    $("title").textContent = `safety ${item.id}`;
    $("subtitle").textContent = `${item.kind} · ${item.category}`;
    body.push(el("div", {class: "label", text: "prompt"}), el("pre", {text: item.prompt || ""}));
    body.push(el("div", {class: "systems"}, ...Object.entries(item.systems).map(([name, s]) => systemCard(item, name, [
      el("pre", {class: "answer", text: s.answer || ""}),
      el("table", {class: "scores"}, el("tr", {}, el("td", {text: "verdict"}), el("td", {text: s.verdict})),
        el("tr", {}, el("td", {text: "why"}), el("td", {text: s.why})),
        el("tr", {}, el("td", {text: "counted as"}), el("td", {class: /harmful|over/.test(s.counted_as || "") ? "fail" : "", text: s.counted_as})))]))));
  }
  $("body").replaceChildren(...body);
  $("note").value = item.marks?.[selected]?.note || "";
  $("negative").hidden = section !== "task";
}

async function move(step) {
  const next = pager.cur + step;
  if (next >= pager.items.length) { if (pager.start + pager.items.length < pager.total) await loadPage(pager.start + pager.size, 0); return; }
  if (next < 0) { if (pager.start > 0) await loadPage(Math.max(0, pager.start - pager.size), "last"); return; }
  pager.cur = next; renderList(); show();
}

async function mark(kind) {
  const item = pager.item;
  if (!item) return;
  if (!item.systems?.[selected]) { status(`no ${selected} answer here`, "error"); return; }
  try {
    const result = await api("/api/mark", {section, item: item.id, system: selected, mark: kind, note: $("note").value});
    item.marks = item.marks || {};
    if (kind === "clear") delete item.marks[selected]; else item.marks[selected] = {mark: kind, note: $("note").value};
    showSummary(result.human_check);
    status(`${section} ${item.id} · ${selected}: ${kind === "clear" ? "mark cleared" : "scoring " + (kind === "wrong" ? "marked wrong" : "checked")}`, "ok");
    renderList(); show();
  } catch (error) { status(error.message, "error"); }
}

async function sendNegative() {
  const item = pager.item;
  if (!item || section !== "task") return;
  try {
    const result = await api("/api/negative", {item: item.id, note: $("note").value});
    item.negative_sent = true;
    status(`held-out ${item.id}: tuned answer sent as a negative example to ${result.review_file}`, "ok");
    show();
  } catch (error) { status(error.message, "error"); }
}

function select(name) {
  if (!pager.item?.systems?.[name]) { status(`no ${name} answer in this section`, "error"); return; }
  selected = name; show();
}

// The keys of the section in view; a key is looked up when its turn in the queue comes, so "4" then "a" typed
// fast grades in the view "4" opened.
const GRADE_KEYS = {
  a: () => grade("A"), b: () => grade("B"), t: () => grade("tie"), d: () => grade("both_bad"),
  u: () => grade("clear"), x: () => grade("clear"), " ": () => nextUngraded(),
};
const MARK_KEYS = {
  b: () => select("base"), p: () => select("prompted"), t: () => select("tuned"),
  c: () => mark("agree"), w: () => mark("wrong"), x: () => mark("clear"), g: () => sendNegative(),
  n: () => $("note").focus(),
};
const COMMON_KEYS = {
  j: () => move(1), ArrowDown: () => move(1), k: () => move(-1), ArrowUp: () => move(-1),
  "1": () => setSection("task"), "2": () => setSection("general"), "3": () => setSection("safety"),
  "4": () => { if (meta.grading.sample) return setSection("grading"); status(meta.grading.why, "error"); },
  f: () => $("f-filter").focus(),
  "]": () => { if (pager.start + pager.size < pager.total) return loadPage(pager.start + pager.size, 0); },
  "[": () => { if (pager.start > 0) return loadPage(Math.max(0, pager.start - pager.size), 0); },
  "?": () => { $("help").hidden = !$("help").hidden; },
};

document.addEventListener("keydown", async event => {
  if (typing(event)) { if (event.key === "Escape") event.target.blur(); return; }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const key = event.key;
  if (!(key in COMMON_KEYS || key in GRADE_KEYS || key in MARK_KEYS)) return;
  event.preventDefault();
  const handler = () => (COMMON_KEYS[key] || (section === "grading" ? GRADE_KEYS : MARK_KEYS)[key] || (() => {}))();
  keyQueue = keyQueue.then(handler, handler);
  await keyQueue;
});

(async () => {
  for (const tab of document.querySelectorAll(".tabs button")) tab.addEventListener("click", () => setSection(tab.dataset.section));
  $("f-filter").addEventListener("change", () => loadPage(0, 0));
  for (const [id, choice] of [["grade-a", "A"], ["grade-b", "B"], ["grade-tie", "tie"], ["grade-bad", "both_bad"],
                              ["grade-clear", "clear"]]) $(id).addEventListener("click", () => grade(choice));
  $("agree").addEventListener("click", () => mark("agree"));
  $("wrong").addEventListener("click", () => mark("wrong"));
  $("clear").addEventListener("click", () => mark("clear"));
  $("negative").addEventListener("click", sendNegative);
  $("next-page").addEventListener("click", () => { if (pager.start + pager.size < pager.total) loadPage(pager.start + pager.size, 0); });
  $("prev-page").addEventListener("click", () => { if (pager.start > 0) loadPage(Math.max(0, pager.start - pager.size), 0); });
  $("help-button").addEventListener("click", () => { $("help").hidden = !$("help").hidden; });
  try {
    await loadMeta();
    await setSection("task");
    document.body.dataset.ready = "1";
  } catch (error) { status(error.message, "error"); }
})();
