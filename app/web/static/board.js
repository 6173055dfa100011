// The supervisor board: one snapshot a second over /ws (docs/agent-desk.md, "The board").
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const STATUS = { available: "就绪", on_break: "小休", logged_out: "已退出" };
const STATE = { idle: "空闲", offered: "振铃", in_call: "通话中", wrap_up: "话后整理" };
let opened = false;

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = String(text);
  if (cls) td.className = cls;
  row.appendChild(td);
}

function clock(seconds) {
  const m = Math.floor(seconds / 60);
  const s = seconds % 60;
  return `${m}:${String(s).padStart(2, "0")}`;
}

function queues(list) {
  const body = document.querySelector("#queues tbody");
  body.replaceChildren();
  for (const q of list) {
    const row = document.createElement("tr");
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = q.title;
    row.appendChild(th);
    cell(row, q.waiting, "num");
    cell(row, clock(q.longest), "num");
    cell(row, q.answered, "num");
    cell(row, q.abandoned, "num");
    const level = q.service_level === null ? "—" : `${q.service_level}%`;
    const below = q.service_level !== null && q.service_level < q.service_target;
    cell(row, `${level} / 目标 ${q.service_target}%`, below ? "num below" : "num");
    cell(row, q.available, "num");
    cell(row, q.busy, "num");
    cell(row, q.logged_in, "num");
    body.appendChild(row);
  }
}

function agents(list, titles) {
  const body = document.querySelector("#agents tbody");
  body.replaceChildren();
  for (const a of list) {
    const row = document.createElement("tr");
    cell(row, a.id);
    cell(row, a.name + (a.role === "supervisor" ? "（值班长）" : ""));
    cell(row, STATUS[a.status] || a.status);
    cell(row, STATE[a.state] || a.state);
    cell(row, clock(a.since), "num");
    cell(row, a.call || "—");
    cell(row, a.queues.map((q) => titles[q] || q).join("、"));
    cell(row, a.csat === null || a.csat === undefined ? "—" : a.csat.toFixed(1), "num");
    body.appendChild(row);
  }
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

// waiting (line) and answered per minute (bars) over the last hour, all queues together
function chart(list) {
  const minutes = list.length ? list[0].series.length : 60;
  const waiting = new Array(minutes).fill(0);
  const answered = new Array(minutes).fill(0);
  for (const q of list) {
    q.series.forEach(([, w, a], i) => { waiting[i] += w; answered[i] += a; });
  }
  const W = 720, H = 220, left = 36, bottom = 20, top = 10;
  const high = Math.max(4, ...waiting, ...answered);
  const x = (i) => left + (i * (W - left - 4)) / minutes;
  const y = (v) => H - bottom - (v * (H - bottom - top)) / high;
  const c = $("chart");
  c.replaceChildren();
  for (const v of [0, Math.round(high / 2), high]) {
    c.appendChild(svg("line", { x1: left, x2: W, y1: y(v), y2: y(v), class: "grid" }));
    c.appendChild(svg("text", { x: left - 4, y: y(v) + 4, "text-anchor": "end", class: "axis" }, v));
  }
  const bw = Math.max(1, (W - left - 4) / minutes - 2);
  answered.forEach((a, i) => {
    if (a) c.appendChild(svg("rect", { x: x(i) + 1, y: y(a), width: bw, height: y(0) - y(a), class: "answered" }));
  });
  const points = waiting.map((w, i) => `${x(i) + bw / 2},${y(w)}`).join(" ");
  c.appendChild(svg("polyline", { points, class: "waiting" }));
  c.appendChild(svg("text", { x: left, y: H - 4, class: "axis" }, "60 分钟前"));
  c.appendChild(svg("text", { x: W - 4, y: H - 4, "text-anchor": "end", class: "axis" }, "现在"));
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/ws`);
  ws.addEventListener("open", () => { opened = true; });
  ws.addEventListener("message", (event) => {
    const m = JSON.parse(event.data);
    if (m.type !== "board") return;
    $("sl-seconds").textContent = m.service_seconds;
    queues(m.queues);
    agents(m.agents, Object.fromEntries(m.queues.map((q) => [q.queue, q.title])));
    chart(m.queues);
    $("status").textContent = `已更新 ${new Date(m.now * 1000).toLocaleTimeString("zh-CN")}`;
  });
  ws.addEventListener("close", () => {
    $("status").textContent = "连接已断开，正在重连…";
    if (!opened) { setTimeout(() => location.assign("/board"), 1500); return; }
    opened = false;
    setTimeout(connect, 1000);
  });
}

document.addEventListener("DOMContentLoaded", connect);
