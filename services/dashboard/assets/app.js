// The sensor dashboard. One EventSource: a `snapshot` (everything the service knows) and then
// `update`s (readings and alerts since the previous one). The browser reconnects by itself and
// sends Last-Event-ID, so the service resumes without gaps or duplicates, or sends a new snapshot.
//
// Updates only change the model; the page is redrawn at most RENDER_MS apart, and only what
// changed: with a thousand sensors reporting, the table updates the rows that moved and the
// charts redraw a few hundred points, a few times a second.
"use strict";

const RENDER_MS = 250;
const RATE_WINDOW_MS = 5000;

const model = {
  hot: 30,
  windowSeconds: 300,
  alertHistory: 500,
  sensors: new Map(),   // sensor_id → latest reading
  buckets: new Map(),   // second → {n, tMin, tMax, tSum, hMin, hMax, hSum}
  alerts: new Map(),    // alert_id → entry
  arrivals: [],         // [time, count] for the readings/s figure
  firstArrival: null,   // when the first update arrived (the figure's window starts there)
};
const dirty = { rows: new Set(), rebuildTable: true, charts: true, alerts: true };

const $ = (id) => document.getElementById(id);

function bucketOf(second) {
  let b = model.buckets.get(second);
  if (!b) {
    b = { n: 0, tMin: Infinity, tMax: -Infinity, tSum: 0, hMin: Infinity, hMax: -Infinity, hSum: 0 };
    model.buckets.set(second, b);
  }
  return b;
}

function newestSecond() {
  let newest = -Infinity;
  for (const s of model.buckets.keys()) if (s > newest) newest = s;
  return newest;
}

function addReading(r) {
  const known = model.sensors.get(r.sensor_id);
  if (!known) dirty.rebuildTable = true;
  if (!known || known.timestamp <= r.timestamp) {
    model.sensors.set(r.sensor_id, r);
    dirty.rows.add(r.sensor_id);
  }
  const second = Math.floor(Date.parse(r.timestamp) / 1000);
  const b = bucketOf(second);
  b.n += 1;
  b.tMin = Math.min(b.tMin, r.temperature); b.tMax = Math.max(b.tMax, r.temperature); b.tSum += r.temperature;
  b.hMin = Math.min(b.hMin, r.humidity); b.hMax = Math.max(b.hMax, r.humidity); b.hSum += r.humidity;
  dirty.charts = true;
}

function addAlert(a) {
  const entry = model.alerts.get(a.alert_id) || {
    alert_id: a.alert_id, sensor_id: a.sensor_id, metric: a.metric,
    raised_at: null, value: null, threshold: null, cleared_at: null, cleared_value: null,
  };
  if (a.event_type === "alert_raised") {
    entry.raised_at = a.occurred_at; entry.value = a.value; entry.threshold = a.threshold;
  } else {
    entry.cleared_at = a.occurred_at; entry.cleared_value = a.value;
  }
  model.alerts.set(a.alert_id, entry);
  dirty.alerts = true;
  dirty.rows.add(a.sensor_id);
}

function onSnapshot(s) {
  model.hot = s.hot_temperature;
  model.windowSeconds = s.window_seconds;
  model.alertHistory = s.alert_history;
  model.sensors = new Map(s.sensors.map((r) => [r.sensor_id, r]));
  model.buckets = new Map(s.series.map(([t, n, tMin, tMax, tSum, hMin, hMax, hSum]) =>
    [t, { n, tMin, tMax, tSum, hMin, hMax, hSum }]));
  model.alerts = new Map(s.alerts.map((a) => [a.alert_id, a]));
  dirty.rebuildTable = true; dirty.charts = true; dirty.alerts = true;
}

function onUpdate(u) {
  for (const r of u.readings) addReading(r);
  for (const a of u.alerts) addAlert(a);
  if (u.readings.length) {
    const now = performance.now();
    model.arrivals.push([now, u.readings.length]);
    if (model.firstArrival === null) model.firstArrival = now;
  }
}

// --- rendering ------------------------------------------------------------------------------

const fmt1 = (v) => (v == null ? "–" : v.toFixed(1));
const fmt2 = (v) => (v == null ? "–" : v.toFixed(2));
const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "–");

function openAlertSensors() {
  const open = new Set();
  for (const a of model.alerts.values()) if (!a.cleared_at) open.add(a.sensor_id);
  return open;
}

const rows = new Map(); // sensor_id → <tr>

function fillRow(tr, r, alerting) {
  const c = tr.children;
  c[0].textContent = alerting ? `#${r.sensor_id} ⚠` : `#${r.sensor_id}`;
  c[1].textContent = fmt2(r.temperature);
  c[2].textContent = fmt2(r.humidity);
  c[3].textContent = time(r.timestamp);
  tr.classList.toggle("hot", r.temperature >= model.hot);
  tr.dataset.hot = r.temperature >= model.hot ? "true" : "false";
}

function renderTable() {
  const open = openAlertSensors();
  const tbody = $("sensor-table").tBodies[0];
  if (dirty.rebuildTable) {
    const ids = [...model.sensors.keys()].sort((a, b) => a - b);
    const fragment = document.createDocumentFragment();
    for (const id of ids) {
      let tr = rows.get(id);
      if (!tr) {
        tr = document.createElement("tr");
        tr.dataset.sensorId = id;
        for (let i = 0; i < 4; i++) tr.appendChild(document.createElement("td"));
        rows.set(id, tr);
      }
      fillRow(tr, model.sensors.get(id), open.has(id));
      fragment.appendChild(tr);
    }
    for (const id of rows.keys()) if (!model.sensors.has(id)) rows.delete(id);
    tbody.replaceChildren(fragment);
  } else {
    for (const id of dirty.rows) {
      const tr = rows.get(id), r = model.sensors.get(id);
      if (tr && r) fillRow(tr, r, open.has(id));
    }
  }
  dirty.rows.clear();
  dirty.rebuildTable = false;
  $("sensor-count").textContent = model.sensors.size;
}

function renderAlerts() {
  const list = [...model.alerts.values()].sort((a, b) =>
    (!!a.cleared_at - !!b.cleared_at) ||
    (Date.parse(b.cleared_at || b.raised_at || 0) - Date.parse(a.cleared_at || a.raised_at || 0)));
  // The service keeps `alert_history` alerts; the page keeps as many.
  for (const a of list.slice(model.alertHistory)) model.alerts.delete(a.alert_id);
  const fragment = document.createDocumentFragment();
  for (const a of list.slice(0, model.alertHistory)) {
    const li = document.createElement("li");
    const open = !a.cleared_at;
    li.dataset.alertId = a.alert_id;
    li.dataset.sensorId = a.sensor_id;
    li.dataset.metric = a.metric;
    li.dataset.status = open ? "open" : "cleared";
    const what = document.createElement("div");
    what.className = "what";
    const unit = a.metric === "temperature" ? "°C" : "%";
    what.textContent = `Sensor #${a.sensor_id}: ${a.metric} ${fmt1(a.value)} ${unit}` +
      (a.threshold != null ? ` (≥ ${fmt1(a.threshold)})` : "");
    const when = document.createElement("div");
    when.className = "when";
    when.textContent = open
      ? `open since ${time(a.raised_at)}`
      : `raised ${time(a.raised_at)}, cleared ${time(a.cleared_at)} at ${fmt1(a.cleared_value)} ${unit}`;
    li.append(what, when);
    fragment.appendChild(li);
  }
  $("alerts").replaceChildren(fragment);
  $("no-alerts").hidden = list.length > 0;
  $("open-count").textContent = list.filter((a) => !a.cleared_at).length;
  dirty.alerts = false;
}

function chart(el, label, unit, threshold) {
  const series = [
    {},
    { label: `max ${unit}`, stroke: "#c62828", width: 1.5 },
    { label: `mean ${unit}`, stroke: "#1565c0", width: 2 },
    { label: `min ${unit}`, stroke: "#2e7d32", width: 1.5 },
  ];
  if (threshold) series.push({ label: "alert threshold", stroke: "#999", dash: [6, 4], width: 1 });
  const opts = {
    width: Math.max(300, el.clientWidth),
    height: 240,
    series,
    // Whole seconds and up on the time axis, never fractions of one.
    axes: [{ incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600] }, { label }],
    scales: { x: { time: true } },
    legend: { live: false },
  };
  return new uPlot(opts, series.map(() => []), el);
}

let temperatureChart, humidityChart;

function renderCharts() {
  const newest = newestSecond();
  const seconds = [...model.buckets.keys()].filter((s) => s > newest - model.windowSeconds).sort((a, b) => a - b);
  for (const s of model.buckets.keys()) if (s <= newest - model.windowSeconds) model.buckets.delete(s);
  const t = [[], [], [], [], []], h = [[], [], [], []];
  for (const s of seconds) {
    const b = model.buckets.get(s);
    t[0].push(s); t[1].push(b.tMax); t[2].push(b.tSum / b.n); t[3].push(b.tMin); t[4].push(model.hot);
    h[0].push(s); h[1].push(b.hMax); h[2].push(b.hSum / b.n); h[3].push(b.hMin);
  }
  temperatureChart.setData(t);
  humidityChart.setData(h);
  $("temperature-chart").dataset.points = seconds.length;
  $("humidity-chart").dataset.points = seconds.length;
  dirty.charts = false;
}

function renderRate() {
  const now = performance.now();
  while (model.arrivals.length && model.arrivals[0][0] < now - RATE_WINDOW_MS) model.arrivals.shift();
  const count = model.arrivals.reduce((sum, [, n]) => sum + n, 0);
  // Over the last RATE_WINDOW_MS, or over what has been seen of it since the page opened; not
  // before a whole second has been seen.
  const seen = model.firstArrival === null ? 0 : now - model.firstArrival;
  $("rate").textContent = seen < 1000 ? "…"
    : Math.round(count / (Math.min(RATE_WINDOW_MS, seen) / 1000));
}

function render() {
  if (dirty.rebuildTable || dirty.rows.size) renderTable();
  if (dirty.alerts) renderAlerts();
  if (dirty.charts) renderCharts();
  renderRate();
}

// --- wiring ---------------------------------------------------------------------------------

function connect() {
  const status = $("connection");
  const source = new EventSource("/events");
  source.addEventListener("snapshot", (e) => onSnapshot(JSON.parse(e.data)));
  source.addEventListener("update", (e) => onUpdate(JSON.parse(e.data)));
  source.onopen = () => { status.textContent = "live"; status.dataset.state = "live"; };
  source.onerror = () => {
    // EventSource retries by itself (sending Last-Event-ID) unless the server refused outright.
    const closed = source.readyState === EventSource.CLOSED;
    status.textContent = closed ? "disconnected, retrying…" : "reconnecting…";
    status.dataset.state = "reconnecting";
    if (closed) setTimeout(connect, 3000);
  };
}

function start() {
  temperatureChart = chart($("temperature-chart"), "°C", "°C", true);
  humidityChart = chart($("humidity-chart"), "%", "%", false);
  window.addEventListener("resize", () => {
    for (const [c, id] of [[temperatureChart, "temperature-chart"], [humidityChart, "humidity-chart"]]) {
      c.setSize({ width: Math.max(300, $(id).clientWidth), height: 240 });
    }
  });
  let last = 0;
  const frame = (now) => {
    if (now - last >= RENDER_MS) { last = now; render(); }
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  // A hidden tab gets no animation frames: the model still follows, and renders on return.
  connect();
}

start();
