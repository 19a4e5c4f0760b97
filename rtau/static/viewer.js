// rtau live viewer: reads rtau.frame/1 messages from ws://<this host>/ws (the page's ?token=
// is passed on) and draws one bar per AU per face, plus a scrolling trace of the chosen AU.
"use strict";

const SCHEMA = "rtau.frame/1";
const MAX_INTENSITY = 5;
const TRACE_FRAMES = 300;
const RECONNECT_MS = 1000;
const TRACE_COLOURS = ["#d1495b", "#e08e0b", "#00798c", "#6a4c93", "#3a7d44", "#8c564b"];

const facesEl = document.getElementById("faces");
const noFaceEl = document.getElementById("no-face");
const statusEl = document.getElementById("status");
const selectEl = document.getElementById("trace-au");
const canvas = document.getElementById("trace");

const panels = new Map();   // face id -> {section, rows: Map(name -> {fill, value})}
const traces = new Map();   // face id -> [{frame, aus}]
let facsNames = {};
let auNames = [];
let lastFrame = -1;
let arrivals = [];

fetch("aus.json" + location.search)
  .then((r) => r.json())
  .then((j) => { for (const a of j.aus) facsNames[a.name] = a.facs_name; })
  .catch(() => {});

function setStatus(text) {
  const rate = arrivals.length > 1
    ? (arrivals.length - 1) / ((arrivals[arrivals.length - 1] - arrivals[0]) / 1000) : 0;
  statusEl.textContent = `${text} · frame ${lastFrame} · ${rate.toFixed(1)} fps`;
}

function setNames(names) {
  auNames = names;
  const chosen = selectEl.value || (names.includes("AU12") ? "AU12" : names[0]);
  selectEl.replaceChildren(...names.map((n) => new Option(n, n)));
  selectEl.value = chosen;
}

function panelFor(id) {
  let panel = panels.get(id);
  if (panel) return panel;
  const section = document.createElement("section");
  section.className = "face";
  const title = document.createElement("h2");
  const swatch = document.createElement("span");
  swatch.className = "swatch";
  swatch.style.background = TRACE_COLOURS[id % TRACE_COLOURS.length];  // its trace's colour
  title.append(swatch, `face ${id}`);
  section.append(title);
  const rows = new Map();
  for (const name of auNames) {
    const row = document.createElement("div");
    row.className = "row";
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name;
    label.title = facsNames[name] || name;
    const track = document.createElement("div");
    track.className = "track";
    const fill = document.createElement("div");
    fill.className = "fill";
    track.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    row.append(label, track, value);
    section.append(row);
    rows.set(name, { fill, value });
  }
  facesEl.append(section);
  panel = { section, rows };
  panels.set(id, panel);
  return panel;
}

function drawBars(faces) {
  const seen = new Set(faces.map((f) => f.id));
  for (const [id, panel] of panels) {
    if (!seen.has(id)) { panel.section.remove(); panels.delete(id); }
  }
  for (const face of [...faces].sort((a, b) => a.id - b.id)) {
    const panel = panelFor(face.id);
    for (const [name, cell] of panel.rows) {
      const v = Math.min(Math.max(face.aus[name] ?? 0, 0), MAX_INTENSITY);
      cell.fill.style.width = `${(100 * v / MAX_INTENSITY).toFixed(3)}%`;
      cell.value.textContent = v.toFixed(2);
    }
    facesEl.append(panel.section);  // keeps the panels in id order
  }
  noFaceEl.hidden = faces.length > 0;
}

function drawTrace() {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = "#eeeeee";
  ctx.lineWidth = 1;
  for (let level = 0; level <= MAX_INTENSITY; level++) {
    const y = Math.round(h - 1 - (h - 2) * level / MAX_INTENSITY) + 0.5;
    ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(w, y); ctx.stroke();
  }
  const name = selectEl.value;
  const x = (frame) => w - 1 - (lastFrame - frame) * (w - 1) / (TRACE_FRAMES - 1);
  const y = (v) => h - 1 - (h - 2) * Math.min(Math.max(v, 0), MAX_INTENSITY) / MAX_INTENSITY;
  ctx.lineWidth = 2;
  for (const [id, points] of traces) {
    ctx.strokeStyle = TRACE_COLOURS[id % TRACE_COLOURS.length];
    ctx.beginPath();
    points.forEach((p, i) => {
      const v = p.aus[name] ?? 0;
      if (i === 0) ctx.moveTo(x(p.frame), y(v)); else ctx.lineTo(x(p.frame), y(v));
    });
    ctx.stroke();
  }
}

function onFrame(msg) {
  lastFrame = msg.frame;
  arrivals.push(performance.now());
  if (arrivals.length > 30) arrivals.shift();
  const names = msg.faces.length ? Object.keys(msg.faces[0].aus) : auNames;
  if (names.join() !== auNames.join()) {
    setNames(names);
    for (const panel of panels.values()) panel.section.remove();
    panels.clear();
  }
  for (const face of msg.faces) {
    const points = traces.get(face.id) ?? [];
    points.push({ frame: msg.frame, aus: face.aus });
    traces.set(face.id, points);
  }
  for (const [id, points] of traces) {
    while (points.length && points[0].frame <= msg.frame - TRACE_FRAMES) points.shift();
    if (!points.length) traces.delete(id);
  }
  drawBars(msg.faces);
  drawTrace();
  document.body.dataset.frame = String(msg.frame);
  setStatus("live");
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/ws${location.search}`);
  ws.onopen = () => setStatus("connected");
  ws.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (msg.schema === SCHEMA) onFrame(msg);
  };
  ws.onclose = () => {
    setStatus(lastFrame >= 0 ? "stream ended, waiting for rtau" : "no stream, retrying");
    setTimeout(connect, RECONNECT_MS);
  };
}

selectEl.addEventListener("change", drawTrace);
connect();
