// The agent console: the desk's JSON messages over /ws (docs/agent-desk.md, "The browser console").
// Everything a caller or the server sends is shown with textContent, never as HTML.
//
// The page follows the desk: every change of the agent's status or state comes as a `status`
// message (an offer, accept, the caller hanging up, wrap-up ending, a missed offer, break), and
// the controls follow the state alone: 接听 and 拒接 while an offer rings, 回复, 发送 and 结束通话 in
// a call, 处理结果 in a call and after it until the next offer. Each offer starts a clean slate.
"use strict";

const $ = (id) => document.getElementById(id);
const STATUS = { available: "就绪", on_break: "小休", logged_out: "已退出" };
const STATE = { idle: "空闲", offered: "来电振铃", in_call: "通话中", wrap_up: "话后整理" };
const BY = { caller: "来电者挂断", agent: "坐席结束", server: "系统结束" };
const CONTEXT = { path: "菜单路径", asked: "机器人问题", node: "所在节点", callback: "回电号码" };

let ws = null;
let opened = false;
let canned = {};
let me = null;
let state = "";
let offer = null; // the ringing offer's call id
let call = null; // the connected call's id
let lastCall = null; // the call that ended last: its disposition may still be given
let titles = { nodes: {}, vars: {}, queues: {} };

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

// ---- titles: what the menu and desk.yaml call things, never their internal names ----------------

function queueTitle(name) {
  return titles.queues[name] || name;
}

function pathTitle(path) {
  const shown = [];
  for (const name of path.split(">")) {
    const title = titles.nodes[name];
    if (title && shown[shown.length - 1] !== title) shown.push(title);
  }
  return shown.length ? shown.join(" › ") : "—";
}

// a saved variable ("account.plan.fee"): its own title, else its nearest titled parent's and the rest
function varTitle(name) {
  if (titles.vars[name]) return titles.vars[name];
  const parts = name.split(".");
  for (let i = parts.length - 1; i > 0; i--) {
    const title = titles.vars[parts.slice(0, i).join(".")];
    if (title) return `${title} ${parts.slice(i).join(".")}`;
  }
  return name;
}

function shown(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "boolean") return value ? "是" : "否";
  return String(value);
}

// a ticket's variables, nested ones flattened: [["account.balance", 86.5], ...]
function flatten(value, prefix, out) {
  if (value !== null && typeof value === "object") {
    const entries = Array.isArray(value) ? value.map((v, i) => [String(i + 1), v]) : Object.entries(value);
    for (const [k, v] of entries) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else {
    out.push([prefix, value]);
  }
  return out;
}

// ---- the state --------------------------------------------------------------------------------

function setStatus(status, newState) {
  const before = state;
  state = newState;
  $("status").textContent = `${STATUS[status] || status} · ${STATE[newState] || newState}`;
  $("ready").setAttribute("aria-pressed", String(status === "available"));
  $("break").setAttribute("aria-pressed", String(status === "on_break"));
  const inCall = newState === "in_call";
  if (before === "offered" && newState !== "offered" && newState !== "in_call") offerGone();
  if (before === "in_call" && !inCall) callOver();
  if (newState !== "offered") offer = null;
  if (!inCall) call = null;
  $("offer-buttons").hidden = newState !== "offered";
  $("reply").disabled = !inCall;
  $("send").disabled = !inCall;
  $("end").disabled = !inCall;
  for (const b of $("canned-buttons").querySelectorAll("button")) b.disabled = !inCall;
  const disposable = inCall || ((newState === "wrap_up" || newState === "idle") && lastCall !== null);
  $("disposition").disabled = !disposable;
}

// a new offer: nothing of the last call stays (reply, 处理结果, conversation, context)
function cleanSlate() {
  $("reply").value = "";
  $("disposition").value = "";
  $("log").replaceChildren();
  $("history").replaceChildren();
  $("history-title").hidden = true;
  $("call-over").hidden = true;
  $("call-over").textContent = "";
  lastCall = null;
}

// the offer was rejected, missed or withdrawn: its caller is not on screen as if current
function offerGone() {
  $("facts").replaceChildren();
  $("history").replaceChildren();
  $("history-title").hidden = true;
  $("nocall").hidden = false;
}

// the call ended (by either side or the server): its context stays, marked as over
function callOver() {
  if (call !== null) lastCall = call;
  $("call-over").textContent = `通话已结束${lastCall ? "：" + lastCall : ""}。可在“处理结果”中记录本次通话的结果。`;
  $("call-over").hidden = false;
}

function showFacts(o) {
  const facts = $("facts");
  facts.replaceChildren();
  const add = (k, v) => { facts.appendChild(el("dt", k)); facts.appendChild(el("dd", v)); };
  add("来电", o.call_id);
  add("队列", queueTitle(o.queue));
  add("已等待", `${o.waited} 秒`);
  for (const [key, value] of o.context) {
    if (key === "transcript") continue;
    if (key === "path") add(CONTEXT.path, pathTitle(value));
    else if (key.startsWith("var:")) add(varTitle(key.slice(4)), value);
    else add(CONTEXT[key] || key, value);
  }
  $("nocall").hidden = true;
}

function showOffer(o) {
  cleanSlate();
  offer = o.call_id;
  showFacts(o);
  note(`新来电 ${o.call_id}（${queueTitle(o.queue)}，已等待 ${o.waited} 秒）`);
  send({ cmd: "history" });
}

function showQueues(queues) {
  const list = $("queues");
  list.replaceChildren();
  if (!queues.length) list.appendChild(el("li", "您不在任何队列中"));
  for (const q of queues) {
    titles.queues[q.queue] = q.title;
    const li = el("li");
    li.appendChild(el("strong", q.title));
    li.appendChild(el("span", ` 排队 ${q.waiting} 人 · 最长等待 ${q.longest} 秒 · 空闲坐席 ${q.available}`));
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
    const b = el("button", text, "small");
    b.type = "button";
    b.title = `发送常用语 :${code}`;
    b.disabled = state !== "in_call";
    b.addEventListener("click", () => say(`:${code}`));
    buttons.appendChild(b);
  }
}

function fillDispositions(items) {
  const select = $("disposition");
  select.replaceChildren(el("option", "（不填）"));
  select.firstChild.value = "";
  for (const d of items || []) select.appendChild(el("option", d));
}

function setTitles(t) {
  titles = { nodes: t.nodes || {}, vars: t.vars || {}, queues: { ...titles.queues, ...(t.queues || {}) } };
}

const handlers = {
  hello(m) {
    me = m.agent;
    $("who").textContent = `${m.agent.name}（工号 ${m.agent.id}）`;
    setTitles(m.titles || {});
    fillCanned(m.canned);
    fillDispositions(m.dispositions);
    call = m.call;
    lastCall = m.last_call || null;
    state = "";
    setStatus(m.status, m.state);
    if (m.offer) showOffer(m.offer);
    if (m.call) {
      $("call-over").hidden = true;
      note(`通话中：${m.call}（页面已恢复）`);
      send({ cmd: "history" });
    }
  },
  status(m) { setStatus(m.status, m.state); },
  titles(m) { setTitles(m); },
  queues(m) { showQueues(m.queues); },
  queue(m) { showQueues([m]); },
  offer(m) { showOffer(m); },
  connected(m) {
    call = m.call_id;
    note(`已接通 ${m.call_id}`);
    $("reply").focus();
  },
  caller(m) { note(`来电者：${m.text}`, "caller"); },
  ended(m) {
    if (m.call_id === call) lastCall = m.call_id;
    note(`通话结束（${BY[m.by] || m.by}）：${m.call_id}`);
  },
  missed(m) {
    note(`未接来电 ${m.call_id}${m.on_break ? "，已连续未接，状态改为小休" : ""}`);
  },
  ok(m) {
    if (m.what === "reject") note(`已拒接 ${m.detail}`);
    if (m.what === "disposition") note(`已记录处理结果：${$("disposition").value || "（不填）"}`);
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
    state = ""; // not a change of the desk's: the page only waits for the next hello
    setStatus("", "");
    $("disposition").disabled = true;
    $("status").textContent = "连接已断开，正在重连…";
    // never opened: the session is gone (or the agent is logged in on the terminal desk): the page
    // itself shows the login form then
    if (!opened) { setTimeout(() => location.assign("/"), 1500); return; }
    opened = false;
    setTimeout(connect, 1000);
  });
}

function expand(text) {
  const code = text.startsWith(":") ? text.slice(1).trim() : "";
  return code && Object.prototype.hasOwnProperty.call(canned, code) ? canned[code] : text;
}

function say(text) {
  if (!text || !call) return;
  send({ cmd: "say", text });
  note(`我：${expand(text)}`, "agent");
}

document.addEventListener("DOMContentLoaded", () => {
  $("ready").addEventListener("click", () => send({ cmd: "ready" }));
  $("break").addEventListener("click", () => send({ cmd: "break" }));
  $("accept").addEventListener("click", () => send({ cmd: "accept" }));
  $("reject").addEventListener("click", () => send({ cmd: "reject" }));
  $("end").addEventListener("click", () => send({ cmd: "end", disposition: $("disposition").value }));
  $("disposition").addEventListener("change", () => {
    // in a call it goes with 结束通话; after the call it is sent at once
    const text = $("disposition").value;
    if (text && state !== "in_call" && lastCall !== null) send({ cmd: "disposition", text });
  });
  $("reply-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("reply").value.trim();
    if (!text || !call) return;
    say(text);
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
    if (t.queue) li.appendChild(el("span", ` ${queueTitle(t.queue)}`, "muted"));
    li.appendChild(el("p", t.message, "message"));
    const vars = flatten(t.vars || {}, "", []);
    if (vars.length) {
      const dl = el("dl", undefined, "vars");
      for (const [k, v] of vars) { dl.appendChild(el("dt", varTitle(k))); dl.appendChild(el("dd", shown(v))); }
      li.appendChild(dl);
    }
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
