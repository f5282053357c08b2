// SensorGate dashboard: fleet overview, active alarms, device charts, live via SSE.
// Hand-written, no dependencies; charts are SVG.
"use strict";
(function () {
  const SEVERITIES = ["critical", "major", "minor", "warning", "info"];
  const state = { config: null, fleet: null, alarms: [], pending: {}, route: null, device: null,
                  range: "1h", filter: "" };
  const stats = { loadStart: performance.now(), firstRender: null, updates: [] };
  window.sgStats = stats;

  const params = new URLSearchParams(location.search);
  if (params.get("token")) {
    localStorage.setItem("sg-token", params.get("token"));
    history.replaceState(null, "", location.pathname + location.hash);
  }
  const $app = document.getElementById("app");

  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g,
      (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }
  function utc(iso) { return iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC") : ""; }
  function ago(iso) {
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 90) return Math.round(s) + " s ago";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    if (s < 172800) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }
  // Pages are laid out once and re-rendered part by part, each part only when its HTML
  // changed. Replacing the whole page on every poll rebuilt the Acknowledge button under
  // the pointer: a click whose mousedown and mouseup land on two different buttons is
  // no click at all, and a rebuilt filter box loses its focus.
  function show(html) { $app.dataset.page = ""; $app.innerHTML = html; }
  function layout(page, html) {
    if ($app.dataset.page === page) return false;
    $app.innerHTML = html; $app.dataset.page = page;
    return true;
  }
  function patch(name, html) {
    const el = $app.querySelector(`[data-part="${name}"]`);
    if (el && el.sgHtml !== html) { el.innerHTML = html; el.sgHtml = html; }
  }
  function num(v) { return v == null ? "" : Number(v).toPrecision(4).replace(/\.?0+$/, ""); }
  function devHref(site, device) {
    return "#/device/" + encodeURIComponent(site) + "/" + encodeURIComponent(device);
  }
  // The access token: from ?token= once, then localStorage. Requests send it in the
  // Authorization header; the event stream (EventSource sets no header) relies on the
  // HttpOnly session cookie that POST /api/session sets for it.
  function token() { return localStorage.getItem("sg-token") || ""; }
  function authHeaders() { return token() ? { Authorization: "Bearer " + token() } : {}; }
  async function getJSON(url) {
    const r = await fetch(url, { cache: "no-store", headers: authHeaders() });
    const doc = await r.json();
    if (r.status === 401) throw new Error("This dashboard needs its access token: open the URL printed when it started (…/?token=…).");
    if (!r.ok) throw new Error(doc.error || r.statusText);
    return doc;
  }

  // ---- fleet page ----------------------------------------------------------------------
  function alarmRows(alarms, withDevice) {
    if (!alarms.length) return '<div class="empty" data-testid="no-alarms">No active alarms.</div>';
    const ro = state.config && state.config.read_only;
    const rows = alarms.map((a) => {
      const pending = state.pending[a.alarm_id];
      const acked = a.state === "acknowledged";
      const btn = ro ? "" : `<button data-ack="${esc(a.alarm_id)}" data-site="${esc(a.site)}"
        data-device="${esc(a.device)}" ${acked || pending ? "disabled" : ""}>${acked ? "acknowledged" : pending ? "sent…" : "Acknowledge"}</button>`;
      return `<tr data-testid="alarm" data-alarm-id="${esc(a.alarm_id)}" data-state="${esc(a.state)}" data-severity="${esc(a.severity)}">
        <td><span class="sev ${esc(a.severity)}">${esc(a.severity)}</span></td>
        <td class="state-${esc(a.state)}" data-testid="alarm-state">${esc(a.state)}</td>
        ${withDevice ? `<td><a class="dev" href="${devHref(a.site, a.device)}">${esc(a.site)}/${esc(a.device)}</a></td>` : ""}
        <td>${esc(a.metric)}</td><td>${esc(a.rule)}</td><td>${num(a.value)}</td><td>${num(a.threshold)}</td>
        <td class="msg">${esc(a.message)}${whyLine(a)}</td><td title="${esc(a.time)}">${utc(a.time)}</td><td>${btn}</td></tr>`;
    });
    return `<table><thead><tr><th>severity</th><th>state</th>${withDevice ? "<th>device</th>" : ""}
      <th>metric</th><th>rule</th><th>value</th><th>threshold</th><th>message</th><th>last change (UTC)</th><th></th></tr></thead>
      <tbody>${rows.join("")}</tbody></table>`;
  }

  function whyLine(a) {
    return a.why ? `<div class="why" data-testid="alarm-why">${esc(a.why)}</div>` : "";
  }

  function renderFleet() {
    const devices = (state.fleet && state.fleet.devices) || [];
    const online = devices.filter((d) => d.online).length;
    const bySev = {};
    for (const a of state.alarms) bySev[a.severity] = (bySev[a.severity] || 0) + 1;
    const f = state.filter.toLowerCase();
    const shown = f ? devices.filter((d) => (d.site + "/" + d.device).toLowerCase().includes(f)) : devices;
    const alarmed = {};
    for (const a of state.alarms) alarmed[a.site + "\u0000" + a.device] = a.severity;
    const cards = [
      ["devices", devices.length, "devices"], ["online", online, "online"],
      ["offline", devices.length - online, "offline"],
      ...SEVERITIES.slice(0, 4).map((s) => ["sev-" + s, bySev[s] || 0, s + " alarms"]),
    ].map(([id, n, l]) => `<div class="card" data-testid="card-${id}"><div class="n">${n}</div><div class="l">${l}</div></div>`);
    const rows = shown.slice(0, 2000).map((d) => {
      const sev = alarmed[d.site + "\u0000" + d.device];
      const values = Object.entries(d.values).map(([k, v]) => `${esc(k)}=${num(v)}`).join(", ");
      return `<tr data-testid="device" data-device="${esc(d.device)}" data-online="${d.online}">
        <td><span class="dot ${d.online ? "online" : "offline"}"></span>${d.online ? "online" : "offline"}</td>
        <td>${esc(d.site)}</td><td><a class="dev" href="${devHref(d.site, d.device)}">${esc(d.device)}</a></td>
        <td title="${esc(d.last_seen)}">${utc(d.last_seen)} <span class="legend">(${ago(d.last_seen)})</span></td>
        <td>${sev ? `<span class="sev ${esc(sev)}">${esc(sev)}</span>` : ""}</td><td class="msg">${values}</td></tr>`;
    });
    if (layout("fleet", `<h1>Fleet</h1><div data-part="cards"></div>
      <section class="panel" data-testid="alarms-panel" data-part="alarms"></section>
      <section class="panel"><h2>Devices <input class="filter" id="filter" placeholder="filter site/device"></h2>
      <div data-part="devices"></div></section>`)) {
      const input = document.getElementById("filter");
      input.value = state.filter;
      input.addEventListener("input", () => { state.filter = input.value; renderFleet(); });
    }
    patch("cards", `<div class="cards">${cards.join("")}</div>`);
    patch("alarms", `<h2>Active alarms (${state.alarms.length})</h2>${alarmRows(state.alarms, true)}`);
    patch("devices", devices.length ? `<table><thead><tr><th>status</th><th>site</th><th>device</th><th>last seen (UTC)</th><th>alarm</th><th>latest values</th></tr></thead>
      <tbody>${rows.join("")}</tbody></table>` : '<div class="empty">No device has reported in the last hour.</div>');
  }

  // ---- device page ---------------------------------------------------------------------
  const SEV_COLOR = { critical: "#f85149", major: "#fb8f44", minor: "#d29922", warning: "#58a6ff", info: "#8b949e" };

  function chart(name, readings, aggregates, expected, alarms, t0, t1) {
    const W = 760, H = 220, L = 48, R = 10, T = 10, B = 24;
    const all = readings.concat(aggregates);
    const inRange = expected.filter((p) => { const t = Date.parse(p.time); return t >= t0 && t <= t1; });
    let lo = Math.min(...all.map((p) => p.min != null ? p.min : p.mean), ...inRange.map((p) => p.low));
    let hi = Math.max(...all.map((p) => p.max != null ? p.max : p.mean), ...inRange.map((p) => p.high));
    if (!isFinite(lo) || !isFinite(hi)) { lo = 0; hi = 1; }
    if (hi === lo) { hi += 1; lo -= 1; }
    const pad = (hi - lo) * 0.08; lo -= pad; hi += pad;
    const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
    const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
    const pts = readings.map((p) => [Date.parse(p.time), p]);
    const line = (arr, key) => arr.map(([t, p], i) => (i ? "L" : "M") + x(t).toFixed(1) + "," + y(p[key]).toFixed(1)).join("");
    const band = pts.length ? line(pts, "max") + pts.slice().reverse().map(([t, p]) => "L" + x(t).toFixed(1) + "," + y(p.min).toFixed(1)).join("") + "Z" : "";
    const aggPts = aggregates.map((p) => [Date.parse(p.time), p]);
    // The expected band: stored aggregates of the buckets before each one (no per-reading write).
    const exp = inRange.map((p) => [Date.parse(p.time), p]);
    const expBand = exp.length > 1 ? exp.map(([t, p], i) => (i ? "L" : "M") + x(t).toFixed(1) + "," + y(p.high).toFixed(1)).join("")
      + exp.slice().reverse().map(([t, p]) => "L" + x(t).toFixed(1) + "," + y(p.low).toFixed(1)).join("") + "Z" : "";
    const expLine = exp.length > 1 ? exp.map(([t, p], i) => (i ? "L" : "M") + x(t).toFixed(1) + "," + y(p.center).toFixed(1)).join("") : "";
    // The detector's own band at each alarm event that carries one: a bar with the expected value.
    const clipId = "clip-" + name.replace(/[^A-Za-z0-9_-]/g, "_");
    const alarmBands = alarms.map((a) => {
      const d = a.detail || {}, t = Date.parse(a.time);
      // Only where the detector fired (a clear's band is what it expects afterwards).
      if (!d.component || d.band_low == null || d.band_high == null || t < t0 || t > t1) return "";
      const xx = x(t), top = y(d.band_high), bot = y(d.band_low);
      const c = SEV_COLOR[a.severity] || "#8b949e";
      const ex = d.expected != null ? `<line x1="${(xx - 7).toFixed(1)}" x2="${(xx + 7).toFixed(1)}" y1="${y(d.expected).toFixed(1)}" y2="${y(d.expected).toFixed(1)}" stroke="${c}" stroke-width="2"/>` : "";
      const v = a.value != null ? `<circle cx="${xx.toFixed(1)}" cy="${y(a.value).toFixed(1)}" r="3.5" fill="none" stroke="${c}" stroke-width="1.5"/>` : "";
      return `<g data-testid="alarm-band" clip-path="url(#${clipId})"><rect x="${(xx - 4).toFixed(1)}" y="${top.toFixed(1)}" width="8" height="${Math.max(1, bot - top).toFixed(1)}" fill="${c}" fill-opacity="0.25" stroke="${c}" stroke-width="1"/>${ex}${v}
        <title>${esc(a.state)} ${esc(a.rule)} ${utc(a.time)}: value ${num(a.value)}, expected ${num(d.expected)} in [${num(d.band_low)}, ${num(d.band_high)}]${a.why ? " — " + esc(a.why) : ""}</title></g>`;
    }).join("");
    let ticks = "";
    for (let i = 0; i <= 4; i++) {
      const v = lo + ((hi - lo) * i) / 4, yy = y(v).toFixed(1);
      ticks += `<line class="axis" x1="${L}" x2="${W - R}" y1="${yy}" y2="${yy}"/><text x="${L - 4}" y="${yy}" text-anchor="end" dy="3">${num(v)}</text>`;
    }
    for (let i = 0; i <= 5; i++) {
      const t = t0 + ((t1 - t0) * i) / 5, xx = x(t).toFixed(1);
      const d = new Date(t).toISOString();
      ticks += `<text x="${xx}" y="${H - 6}" text-anchor="middle">${(t1 - t0) > 172800e3 ? d.slice(5, 10) + " " : ""}${d.slice(11, 16)}</text>`;
    }
    const markers = alarms.map((a) => {
      const t = Date.parse(a.time); if (t < t0 || t > t1) return "";
      const xx = x(t).toFixed(1), c = SEV_COLOR[a.severity] || "#8b949e";
      return `<g data-testid="alarm-marker" data-state="${esc(a.state)}"><line class="marker" x1="${xx}" x2="${xx}" y1="${T}" y2="${H - B}" stroke="${c}" stroke-dasharray="${a.state === "cleared" ? "2 3" : ""}"/>
        <circle cx="${xx}" cy="${T + 4}" r="4" fill="${c}"><title>${esc(a.state)} ${esc(a.severity)} ${esc(a.rule)} ${utc(a.time)} ${esc(a.message)}</title></circle></g>`;
    }).join("");
    return `<div class="panel chart" data-testid="chart" data-series="${esc(name)}"><h2>${esc(name)}</h2>
      <svg viewBox="0 0 ${W} ${H}" preserveAspectRatio="none" role="img" aria-label="${esc(name)}">
      <defs><clipPath id="${clipId}"><rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}"/></clipPath></defs>${ticks}
      <path class="expected" data-testid="expected-band" d="${expBand}"/><path class="expected-line" d="${expLine}"/>
      <path class="band" d="${band}"/><path class="mean" d="${pts.length ? line(pts, "mean") : ""}"/>
      <path class="agg" d="${aggPts.length ? line(aggPts, "mean") : ""}"/>
      ${pts.length < 3 ? pts.map(([t, p]) => `<circle cx="${x(t).toFixed(1)}" cy="${y(p.mean).toFixed(1)}" r="3" fill="#58a6ff"/>`).join("") : ""}${markers}${alarmBands}</svg>
      <div class="legend"><i class="readings-key"></i>readings (mean, min–max band)<i class="agg-key"></i>window aggregates<i class="expected-key"></i>expected band (median ± 3σ of the 30 buckets before)<i class="alarm-key"></i>alarm events, with the detector's expected value and band</div></div>`;
  }

  function renderDevice() {
    const d = state.device;
    if (!d) { show('<div class="empty">Loading…</div>'); return; }
    if (d.error) { show(`<div class="error">${esc(d.error)}</div>`); return; }
    const t0 = Date.parse(d.start), t1 = Date.parse(d.end);
    const series = [...new Set(d.readings.map((p) => p.series).concat(d.aggregates.map((p) => p.series)))].sort();
    const active = state.alarms.filter((a) => a.site === d.site && a.device === d.device);
    const st = d.status;
    const ranges = state.config.ranges.map((r) => `<button data-range="${r}" class="${r === state.range ? "sel" : ""}">${r}</button>`).join("");
    const charts = series.map((s) => {
      const metric = s.split("/").pop();
      const alarms = d.alarms.filter((a) => a.metric === s || a.metric === metric || a.metric === "*");
      return chart(s, d.readings.filter((p) => p.series === s), d.aggregates.filter((p) => p.series === s),
        (d.band || []).filter((p) => p.series === s), alarms, t0, t1);
    });
    layout("device\u0000" + d.site + "\u0000" + d.device, `<h1 data-testid="device-title" data-part="title"></h1>
      <div class="ranges" data-part="ranges"></div><br>
      <section class="panel" data-part="alarms"></section>
      <div class="charts" data-part="charts"></div>
      <section class="panel" data-part="events"></section>`);
    patch("title", `<a class="dev" href="#/">Fleet</a> / ${esc(d.site)} / ${esc(d.device)}
      ${st ? `<span class="legend"><span class="dot ${st.online ? "online" : "offline"}"></span>${st.online ? "online" : "offline"}, last seen ${utc(st.last_seen)} (${ago(st.last_seen)})</span>` : '<span class="legend">not seen lately</span>'}`);
    patch("ranges", `${ranges} <span class="legend">interval ${esc(d.interval)}</span>`);
    patch("alarms", `<h2>Active alarms (${active.length})</h2>${alarmRows(active, false)}`);
    patch("charts", charts.join("") || '<div class="empty">No readings in this range.</div>');
    patch("events", `<h2>Alarm events in range (${d.alarms.length})</h2>
      ${d.alarms.length ? `<table><thead><tr><th>time (UTC)</th><th>severity</th><th>state</th><th>metric</th><th>rule</th><th>value</th><th>message</th></tr></thead><tbody>
      ${d.alarms.slice(0, 200).map((a) => `<tr data-testid="alarm-event"><td>${utc(a.time)}</td><td><span class="sev ${esc(a.severity)}">${esc(a.severity)}</span></td><td>${esc(a.state)}</td><td>${esc(a.metric)}</td><td>${esc(a.rule)}</td><td>${num(a.value)}</td><td class="msg">${esc(a.message)}${whyLine(a)}</td></tr>`).join("")}</tbody></table>` : '<div class="empty">None.</div>'}`);
  }

  let deviceTimer = null, deviceBusy = false;
  async function loadDevice() {
    const r = state.route; if (!r || r.page !== "device" || deviceBusy) return;
    deviceBusy = true;
    try {
      state.device = await getJSON(`/api/device?site=${encodeURIComponent(r.site)}&device=${encodeURIComponent(r.device)}&range=${state.range}`);
    } catch (e) { state.device = { error: String(e.message || e) }; }
    deviceBusy = false;
    if (state.route && state.route.page === "device") renderDevice();
  }

  // ---- routing, live updates, actions ---------------------------------------------------
  function render() {
    const t = performance.now();
    if (state.route.page === "device") renderDevice(); else renderFleet();
    if (stats.firstRender == null && state.fleet) stats.firstRender = performance.now() - stats.loadStart;
    return performance.now() - t;
  }
  function route() {
    const m = location.hash.match(/^#\/device\/([^/]+)\/([^/]+)$/);
    clearInterval(deviceTimer);
    if (m) {
      state.route = { page: "device", site: decodeURIComponent(m[1]), device: decodeURIComponent(m[2]) };
      state.device = null; render(); loadDevice();
      deviceTimer = setInterval(loadDevice, 5000);
    } else { state.route = { page: "fleet" }; render(); }
  }

  // The server's own MQTT alarm feed: connected, or reconnecting to the broker (alarms
  // then arrive with the InfluxDB poll only, a few seconds later).
  function showFeed(f) {
    const el = document.getElementById("feed");
    if (!f || !el) return;
    const text = { connected: "alarm feed live", connecting: "alarm feed connecting…",
                   reconnecting: "alarm feed: broker unreachable, retrying", off: "alarm feed off" }[f.state] || f.state;
    el.textContent = text;
    el.dataset.state = f.state;
    el.className = "feed " + (f.state === "connected" ? "on" : "off");
    el.title = f.error ? f.broker + ": " + f.error + (f.retry_in_s != null ? " (next try in " + f.retry_in_s + " s)" : "") : f.broker;
  }

  function connect() {
    const live = document.getElementById("live");
    const es = new EventSource("/api/events");
    es.onopen = () => { live.textContent = "live"; live.className = "live on"; };
    es.onerror = () => { live.textContent = "reconnecting…"; live.className = "live off"; };
    es.addEventListener("alarms", (ev) => {
      const t = performance.now();
      state.alarms = JSON.parse(ev.data);
      for (const a of state.alarms) if (a.state === "acknowledged") delete state.pending[a.alarm_id];
      const ms = render();
      stats.updates.push({ kind: "alarms", parse_render_ms: performance.now() - t, render_ms: ms, at: Date.now() });
      if (state.route.page === "device") loadDevice();
    });
    es.addEventListener("feed", (ev) => showFeed(JSON.parse(ev.data)));
    es.addEventListener("fleet", (ev) => {
      const t = performance.now();
      state.fleet = JSON.parse(ev.data);
      let ms = 0;
      if (state.route.page === "fleet") ms = render();
      stats.updates.push({ kind: "fleet", parse_render_ms: performance.now() - t, render_ms: ms, at: Date.now() });
    });
  }

  $app.addEventListener("click", async (ev) => {
    const b = ev.target.closest("button");
    if (!b) return;
    if (b.dataset.range) { state.range = b.dataset.range; loadDevice(); return; }
    if (!b.dataset.ack) return;
    const { ack, site, device } = b.dataset;
    state.pending[ack] = true;
    render();  // the button becomes "sent…" through the same render as every other change
    const r = await fetch("/api/ack", {
      method: "POST",
      headers: { "Content-Type": "application/json", ...authHeaders() },
      body: JSON.stringify({ site, device, alarm_id: ack, by: "dashboard" }),
    });
    if (!r.ok) {
      delete state.pending[ack];
      const doc = await r.json().catch(() => ({}));
      alert("Acknowledge failed: " + (doc.error || r.status));
      render();
    }
  });

  const tick = () => { document.getElementById("clock").textContent = new Date().toISOString().slice(0, 19).replace("T", " ") + " UTC"; };
  tick(); setInterval(tick, 1000);
  window.addEventListener("hashchange", route);
  (async function start() {
    if (token()) await fetch("/api/session", { method: "POST", headers: authHeaders() }).catch(() => null);
    try {
      state.config = await getJSON("/api/config");
    } catch (e) {
      show(`<div class="error" data-testid="error">${esc(e.message)}</div>`);
      return;
    }
    showFeed(state.config.feed);
    document.getElementById("mode").textContent = state.config.read_only ? "read-only" : "acknowledge enabled";
    try {
      const [fleet, alarms] = await Promise.all([getJSON("/api/fleet"), getJSON("/api/alarms")]);
      state.fleet = fleet; state.alarms = alarms;
    } catch (e) { show(`<div class="error">${esc(e.message)}</div>`); }
    route();
    connect();
  })();
})();
