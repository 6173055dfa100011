// The agent console: the desk's JSON messages over /ws (docs/agent-desk.md, "The browser console").
// Everything a caller or the server sends is shown with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const STATUS = { available: "就绪", on_break: "小休", logged_out: "已退出" };
const STATE = { idle: "空闲", offered: "来电振铃", in_call: "通话中", wrap_up: "话后整理" };
const BY = { caller: "来电者挂断", agent: "坐席结束", server: "系统结束" };
const CONTEXT = { path: "菜单路径", asked: "机器人问题", transcript: "记录", node: "所在节点" };

let ws = null;
let opened = false;
let canned = {};
let me = null;
let offer = null; // the pending offer's call id
let call = null; // the connected call's id
const titles = {}; // queue name -> title

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function note(text, cls) {
  const log = $("log");
  const line = el("p", text, cls || "system");
  log.appendChild(line);
  while (log.childNodes.length > 500) log.removeChild(log.firstChild);
  log.scrollTop = log.scrollHeight;
}

function send(message) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
}

function setStatus(status, state) {
  $("status").textContent = `${STATUS[status] || status} · ${STATE[state] || state}`;
  $("ready").setAttribute("aria-pressed", String(status === "available"));
  $("break").setAttribute("aria-pressed", String(status === "on_break"));
  const inCall = state === "in_call";
  $("reply").disabled = !inCall;
  $("send").disabled = !inCall;
  $("end").disabled = !inCall;
  $("offer-buttons").hidden = state !== "offered";
  if (state !== "offered") offer = null;
  if (!inCall) call = null;
}

function showFacts(o) {
  const facts = $("facts");
  facts.replaceChildren();
  const add = (k, v) => { facts.appendChild(el("dt", k)); facts.appendChild(el("dd", v)); };
  add("来电", o.call_id);
  add("队列", titles[o.queue] || o.queue);
  add("已等待", `${o.waited} 秒`);
  for (const [key, value] of o.context) {
    if (key === "transcript") continue;
    const label = key.startsWith("var:") ? `变量 ${key.slice(4)}` : (CONTEXT[key] || key);
    add(label, value);
  }
  $("nocall").hidden = true;
  $("history").replaceChildren();
  $("history-title").hidden = true;
}

function showOffer(o) {
  offer = o.call_id;
  showFacts(o);
  $("offer-buttons").hidden = false;
  note(`新来电 ${o.call_id}（队列 ${o.queue}，已等待 ${o.waited} 秒）`);
  send({ cmd: "history" });
}

function showQueues(queues) {
  const list = $("queues");
  list.replaceChildren();
  if (!queues.length) list.appendChild(el("li", "您不在任何队列中"));
  for (const q of queues) {
    titles[q.queue] = q.title;
    const li = el("li");
    li.appendChild(el("strong", q.title));
    li.appendChild(el("span", ` 排队 ${q.waiting} 人 · 最长等待 ${q.longest} 秒 · 空闲坐席 ${q.available}`));
    li.dataset.queue = q.queue;
    list.appendChild(li);
  }
}

function fillCanned(items) {
  canned = items || {};
  const list = $("canned");
  const buttons = $("canned-buttons");
  list.replaceChildren();
  buttons.replaceChildren();
  for (const [code, text] of Object.entries(canned)) {
    const option = el("option");
    option.value = `:${code}`;
    option.label = text;
    list.appendChild(option);
    const b = el("button", `:${code}`, "small");
    b.type = "button";
    b.title = text;
    b.addEventListener("click", () => { $("reply").value = text; $("reply").focus(); });
    buttons.appendChild(b);
  }
}

function fillDispositions(items) {
  const select = $("disposition");
  select.replaceChildren(el("option", "（不填）"));
  select.firstChild.value = "";
  for (const d of items || []) select.appendChild(el("option", d));
}

const handlers = {
  hello(m) {
    me = m.agent;
    $("who").textContent = `${m.agent.name}（工号 ${m.agent.id}）`;
    fillCanned(m.canned);
    fillDispositions(m.dispositions);
    setStatus(m.status, m.state);
    if (m.offer) showOffer(m.offer);
    if (m.call) {
      call = m.call;
      note(`通话中：${m.call}（页面已恢复）`);
      send({ cmd: "history" });
    }
  },
  status(m) { setStatus(m.status, m.state); },
  queues(m) { showQueues(m.queues); },
  queue(m) { showQueues([m]); },
  offer(m) { showOffer(m); },
  connected(m) {
    call = m.call_id;
    $("offer-buttons").hidden = true;
    note(`已接通 ${m.call_id}`);
    $("reply").focus();
  },
  caller(m) { note(`来电者：${m.text}`, "caller"); },
  ended(m) {
    note(`通话结束（${BY[m.by] || m.by}）：${m.call_id}`);
    $("offer-buttons").hidden = true;
  },
  missed(m) {
    note(`未接来电 ${m.call_id}${m.on_break ? "，已连续未接，状态改为小休" : ""}`);
    $("offer-buttons").hidden = true;
  },
  ok(m) {
    if (m.what === "reject") note(`已拒接 ${m.detail}`);
  },
  error(m) { note(`错误：${m.text}`, "error"); },
  info(m) { note(m.text); },
  history(m) {
    $("history-title").hidden = false;
    const who = m.direction === "caller" ? "来电者" : m.direction === "agent" ? `坐席 ${m.agent || ""}` : "系统";
    $("history").appendChild(el("li", `${who}：${m.text}`, m.direction));
  },
  logged_out() {
    note("您已被登出（账号已从 desk.yaml 删除）。", "error");
    setTimeout(() => location.assign("/"), 2000);
  },
};

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  ws = new WebSocket(`${scheme}//${location.host}/ws`);
  ws.addEventListener("open", () => { opened = true; });
  ws.addEventListener("message", (event) => {
    const m = JSON.parse(event.data);
    const handle = handlers[m.type];
    if (handle) handle(m);
  });
  ws.addEventListener("close", () => {
    $("status").textContent = "连接已断开，正在重连…";
    setStatus("", "");
    $("status").textContent = "连接已断开，正在重连…";
    // never opened: the session is gone (or the agent is logged in on the terminal desk): the page
    // itself shows the login form then
    if (!opened) { setTimeout(() => location.assign("/"), 1500); return; }
    opened = false;
    setTimeout(connect, 1000);
  });
}

function expand(text) {
  if (text.startsWith(":") && Object.prototype.hasOwnProperty.call(canned, text.slice(1).trim())) {
    return canned[text.slice(1).trim()];
  }
  return text;
}

document.addEventListener("DOMContentLoaded", () => {
  $("ready").addEventListener("click", () => send({ cmd: "ready" }));
  $("break").addEventListener("click", () => send({ cmd: "break" }));
  $("accept").addEventListener("click", () => send({ cmd: "accept" }));
  $("reject").addEventListener("click", () => send({ cmd: "reject" }));
  $("end").addEventListener("click", () => send({ cmd: "end", disposition: $("disposition").value }));
  $("reply-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("reply").value.trim();
    if (!text || !call) return;
    send({ cmd: "say", text });
    note(`我：${expand(text)}`, "agent");
    $("reply").value = "";
  });
  $("tickets-refresh").addEventListener("click", loadTickets);
  connect();
  loadTickets();
});

async function loadTickets() {
  const list = $("tickets");
  let tickets = [];
  try {
    const r = await fetch("/api/tickets?status=open&limit=20", { credentials: "same-origin" });
    if (!r.ok) throw new Error(String(r.status));
    tickets = await r.json();
  } catch (e) {
    list.replaceChildren(el("li", "工单暂时无法读取", "muted"));
    return;
  }
  list.replaceChildren();
  if (!tickets.length) list.appendChild(el("li", "没有待处理的工单", "muted"));
  for (const t of tickets) {
    const li = el("li");
    li.appendChild(el("strong", t.id));
    const vars = Object.entries(t.vars || {}).map(([k, v]) => `${k}=${v}`).join(" ");
    li.appendChild(el("span", ` ${t.message}${vars ? "（" + vars + "）" : ""}`));
    const b = el("button", "关闭", "small");
    b.type = "button";
    b.setAttribute("aria-label", `关闭工单 ${t.id}`);
    b.addEventListener("click", async () => {
      await fetch(`/api/tickets/${encodeURIComponent(t.id)}/close`, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ note: me ? `坐席 ${me.id} 在坐席台关闭` : "" }),
      });
      loadTickets();
    });
    li.appendChild(b);
    list.appendChild(li);
  }
}
