"use strict";
// Shared by both review pages: the API call (every request carries the token), small DOM helpers, paging.
// Keys are handled one after another: a key pressed while the previous one still waits for the server acts on
// the state that one leaves (fast typing never skips or reorders).
let keyQueue = Promise.resolve();
const TOKEN = document.querySelector('meta[name="review-token"]').content;

async function api(path, body) {
  const url = path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(TOKEN);
  const init = body === undefined ? {} : {method: "POST", headers: {"Content-Type": "application/json"},
                                          body: JSON.stringify(body)};
  const response = await fetch(url, init);
  let data;
  try { data = await response.json(); }
  catch { throw new Error(`the server gave no readable answer (HTTP ${response.status}): not confirmed`); }
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function status(text, kind) {
  const node = document.getElementById("status");
  node.textContent = text;
  node.className = kind || "";
}

function typing(event) {
  const tag = event.target.tagName;
  return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT";
}

function contentText(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map(p => (p && typeof p.text === "string") ? p.text : "").join("");
  return content === undefined || content === null ? "" : JSON.stringify(content);
}

function renderChat(messages) {
  const box = el("div", {class: "chat"});
  for (const m of messages || []) {
    if (!m || typeof m !== "object") { box.append(el("pre", {class: "msg bad", text: JSON.stringify(m)})); continue; }
    const head = el("div", {class: "role", text: String(m.role) + (m.weight === 0 ? " · weight 0" : "")});
    const body = el("pre", {class: "content", text: contentText(m.content)});
    const extra = m.tool_calls ? el("pre", {class: "tools", text: JSON.stringify(m.tool_calls, null, 1)}) : null;
    box.append(el("div", {class: "msg role-" + String(m.role)}, head, body, extra));
  }
  return box;
}

function issueList(node, issues) {
  node.replaceChildren(...(issues || []).map(i =>
    el("li", {class: i.severity, "data-code": i.code, text: `[${i.code}] ${i.message}`})));
}

// A page of items from the server: start, size, total; the list never holds more than one page.
class Pager {
  constructor(size) { this.start = 0; this.size = size; this.total = 0; this.items = []; this.cur = 0; }
  get item() { return this.items[this.cur]; }
  range() {
    if (!this.total) return "0 of 0";
    return `${this.start + 1}–${this.start + this.items.length} of ${this.total}`;
  }
}
