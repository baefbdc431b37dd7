// The dashboard page: renders GET /events (server-sent events, one state snapshot a second,
// telemetry/dashboard.py FleetBoard.snapshot) into the fleet table, the uPlot charts, the
// unroll accounting and the latest eval video.
"use strict";

const CURVES = ["mean_return", "mean_x_pos", "flag_rate", "env_fps"];
const charts = {};
let lastVideo = null;

function text(value, digits = 0) {
  if (value === null || value === undefined) return "-";
  if (typeof value === "number") {
    return value.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
  }
  return String(value);
}

function gpuText(gpu) {
  if (!gpu || gpu.length === 0) return "-";
  return gpu.map((g) => {
    const util = g.utilization === null ? "?" : `${text(g.utilization)}%`;
    const mem = g.memory_used_mb === null ? "" : ` ${text(g.memory_used_mb / 1024, 1)}G`;
    return util + mem;
  }).join(", ");
}

function cell(row, value, cls) {
  const td = document.createElement("td");
  td.textContent = value;
  if (cls) td.className = cls;
  row.appendChild(td);
}

function renderFleet(peers) {
  const body = document.querySelector("#fleet tbody");
  body.replaceChildren();
  for (const p of peers) {
    const row = document.createElement("tr");
    row.dataset.role = p.role;
    row.dataset.id = p.id;
    cell(row, p.role);
    cell(row, p.id);
    cell(row, p.host);
    cell(row, p.state, `state-${p.state}`);
    cell(row, text(p.env_fps));
    cell(row, p.policy_lag === null ? "-" : text(p.policy_lag, 1));
    cell(row, text(p.cpu_percent));
    cell(row, text(p.rss_mb));
    cell(row, gpuText(p.gpu));
    cell(row, p.stalled ? "STALLED" : "", p.stalled ? "stalled" : "");
    body.appendChild(row);
  }
}

function renderSummary(state) {
  const s = state.status;
  const connection = document.getElementById("connection");
  connection.className = state.answering ? "answering" : "silent";
  connection.textContent = state.answering
    ? "live"
    : state.silent_s === null ? "nothing answers yet" : `silent for ${text(state.silent_s)} s`;
  document.getElementById("endpoint").textContent = state.endpoint;
  const summary = document.getElementById("summary");
  if (!s) {
    summary.textContent = "waiting for the learner's status...";
    return;
  }
  const frac = s.total_env_frames ? (100 * s.env_frames) / s.total_env_frames : 0;
  summary.textContent =
    `frames ${text(s.env_frames)} / ${text(s.total_env_frames)} (${text(frac, 1)}%) | ` +
    `${text(s.env_fps)} fps | updates ${text(s.updates)} | version ${s.policy_version} | ` +
    `actors ${s.actors_alive} alive, ${s.actors_stale} stale, ${s.actors_dead} dead | ` +
    `episodes ${text(s.episodes)} | flags ${text(s.flags)}` + (s.done ? " | done" : "");
  const hints = document.getElementById("hints");
  hints.hidden = !s.hints || s.hints.length === 0;
  hints.textContent = hints.hidden ? "" : `hints: ${s.hints.join(", ")} (see the learner log)`;
}

function renderAccounting(state) {
  const body = document.querySelector("#accounting tbody");
  body.replaceChildren();
  const s = state.status;
  const learner = state.peers.find((p) => p.role === "learner");
  const rows = [];
  if (s) {
    rows.push(["accepted", s.accepted], ["rejected", s.rejected],
      ["dropped stale", s.dropped_stale], ["duplicates", s.duplicates]);
  }
  if (learner) {
    for (const [key, value] of Object.entries(learner.counters)) {
      if (key === "sent" || key === "lost" || key.startsWith("rejected:")) rows.push([key, value]);
    }
  }
  for (const [name, value] of rows) {
    const row = document.createElement("tr");
    row.dataset.counter = name;
    cell(row, name);
    cell(row, text(value));
    body.appendChild(row);
  }
}

function renderCurves(curves) {
  const x = curves.env_frames;
  for (const name of CURVES) {
    const el = document.getElementById(`curve-${name}`);
    const data = [x, curves[name]];
    el.dataset.points = String(x.length);
    if (!charts[name]) {
      const width = Math.max(240, el.clientWidth || 400);
      charts[name] = new uPlot({
        title: el.dataset.title,
        width,
        height: 180,
        scales: { x: { time: false } },
        axes: [{ label: "env frames" }, {}],
        series: [{ label: "env frames" }, { label: el.dataset.title, stroke: "#1f5fbf", width: 1.5 }],
      }, data, el);
    } else {
      charts[name].setData(data);
    }
  }
}

function renderVideo(state) {
  if (state.video === lastVideo) return;
  lastVideo = state.video;
  const img = document.getElementById("video");
  document.getElementById("video-none").hidden = state.video !== null;
  img.hidden = state.video === null;
  document.getElementById("video-name").textContent = state.video || "";
  if (state.video !== null) img.src = `/video/latest?name=${encodeURIComponent(state.video)}`;
}

function render(state) {
  renderSummary(state);
  renderFleet(state.peers);
  renderAccounting(state);
  renderCurves(state.curves);
  renderVideo(state);
}

const events = new EventSource("/events");
events.onmessage = (event) => render(JSON.parse(event.data));
events.onerror = () => {
  const connection = document.getElementById("connection");
  connection.className = "silent";
  connection.textContent = "dashboard server unreachable (retrying)";
};
