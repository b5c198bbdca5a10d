"use strict";
// The hub's dashboard. Everything from the hub is untrusted text: it is
// only ever put in the page with textContent, never parsed as HTML.
(function () {
  const TAIL_ROWS = 200;
  const CHART_POINTS = 120;
  // The tail asks the hub for at most this many events a second; the hub
  // counts the rest instead of sending them (a "skipped" frame).
  const TAIL_PER_SECOND = 50;
  // The token: from the URL's fragment (/#token=…, never sent to the
  // server, so it stays out of access logs), or from its query (?token=…,
  // where the hub accepts it). It goes out as a header to the API and as a
  // subprotocol on the WebSocket, never in a URL.
  const fragment = new URLSearchParams(window.location.hash.replace(/^#/, ""));
  const token = fragment.get("token") || new URLSearchParams(window.location.search).get("token");
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const byId = (id) => document.getElementById(id);

  function setText(id, value) {
    byId(id).textContent = String(value);
  }

  function badge(id, text, ok) {
    const el = byId(id);
    el.textContent = text;
    el.className = "badge " + (ok ? "ok" : "bad");
  }

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text === undefined || text === null ? "" : String(text);
    row.appendChild(td);
    return td;
  }

  function duration(seconds) {
    const s = Math.floor(seconds);
    if (s < 120) return s + " s";
    if (s < 7200) return Math.floor(s / 60) + " min";
    return Math.floor(s / 3600) + " h";
  }

  async function getJson(path) {
    const response = await fetch(path, { headers: headers, cache: "no-store" });
    if (response.status === 401) throw new Error(path + " answered 401: open this page as /#token=TOKEN");
    if (!response.ok) throw new Error(path + " answered " + response.status);
    return response.json();
  }

  // ---- stats, rates and the chart ----
  let previous = null;
  const points = [];

  function family(value) {
    if (typeof value === "number") return value;
    return Object.values(value || {}).reduce((a, b) => a + b, 0);
  }

  function showStats(s) {
    const st = s.stats;
    setText("version", s.version);
    setText("uptime", duration(s.uptime_seconds));
    setText("clients", st.clients);
    setText("events-in", st.events_in_total);
    setText("frames-dropped", st.frames_dropped_total);
    if (previous && s.uptime_seconds > previous.uptime_seconds) {
      const dt = s.uptime_seconds - previous.uptime_seconds;
      const rate = (name) => Math.max(0, (st[name] - previous.stats[name]) / dt);
      const point = { in: rate("events_in_total"), out: rate("frames_out_total") };
      setText("rate-in", point.in.toFixed(1));
      setText("rate-out", point.out.toFixed(1));
      setText("rate-dropped", rate("frames_dropped_total").toFixed(1));
      points.push(point);
      if (points.length > CHART_POINTS) points.shift();
      drawChart();
    }
    previous = s;
    const body = byId("counters-body");
    const rows = [];
    for (const [name, value] of Object.entries(st)) {
      const tr = document.createElement("tr");
      cell(tr, name);
      cell(tr, typeof value === "number" ? value : family(value) + "  " + JSON.stringify(value));
      rows.push(tr);
    }
    body.replaceChildren(...rows);
  }

  function drawChart() {
    const canvas = byId("chart");
    const ctx = canvas.getContext("2d");
    if (!ctx) return;
    const w = canvas.width, h = canvas.height, pad = 4;
    ctx.clearRect(0, 0, w, h);
    const top = Math.max(1, ...points.map((p) => Math.max(p.in, p.out)));
    const styles = getComputedStyle(document.documentElement);
    ctx.fillStyle = styles.getPropertyValue("--muted");
    ctx.font = "11px sans-serif";
    ctx.fillText(top.toFixed(0) + "/s", pad, 12);
    for (const [key, color] of [["in", "--in"], ["out", "--out"]]) {
      ctx.strokeStyle = styles.getPropertyValue(color);
      ctx.lineWidth = 2;
      ctx.beginPath();
      points.forEach((p, i) => {
        const x = w - (points.length - 1 - i) * (w / CHART_POINTS) - pad;
        const y = h - pad - (p[key] / top) * (h - 2 * pad - 12);
        if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      });
      ctx.stroke();
    }
  }

  function showClients(c) {
    setText("clients-total", c.total);
    const rows = c.clients.map((client) => {
      const tr = document.createElement("tr");
      const f = client.filter;
      let filter = f.mode;
      if (f.count > 0) filter += " [" + f.types.join(", ") + (f.count > f.types.length ? ", +" + (f.count - f.types.length) : "") + "]";
      if (client.sample) filter += ", sampled " + client.sample.per_second + "/s (" + client.sample.skipped + " skipped)";
      cell(tr, client.id);
      cell(tr, client.peer);
      cell(tr, new Date(client.since_unix_ms).toLocaleTimeString() + " (" + duration(client.connected_seconds) + ")");
      cell(tr, filter);
      cell(tr, client.queued_frames);
      cell(tr, client.frames_out);
      cell(tr, client.dropped);
      cell(tr, client.acks ? "yes" : "no");
      return tr;
    });
    byId("clients-body").replaceChildren(...rows);
  }

  async function poll() {
    try {
      showStats(await getJson("/api/stats"));
      showClients(await getJson("/api/clients"));
      badge("status", "live", true);
    } catch (e) {
      badge("status", String(e.message || e), false);
    }
  }

  // ---- the live tail: an ordinary subscription to the hub ----
  let kept = [];
  let received = 0, skipped = 0, filtered = 0, sampled = 0, dirty = false;
  const filterBox = byId("type-filter");

  function matches(type) {
    const wanted = filterBox.value.trim();
    return wanted === "" || String(type).includes(wanted);
  }

  function onFrame(text) {
    let event = null;
    try { event = JSON.parse(text); } catch (e) { event = null; }
    if (event === null || typeof event !== "object") event = { id: "?", event_type: "?", payload: text };
    // The hub's count of events it did not send to this sampled tail.
    if (event.type === "skipped" && event.event_type === undefined) {
      sampled = Number(event.events) || 0;
      return;
    }
    received += 1;
    if (!matches(event.event_type)) { filtered += 1; return; }
    let payload = event.payload;
    payload = typeof payload === "string" ? payload : JSON.stringify(payload);
    if (payload && payload.length > 2000) payload = payload.slice(0, 2000) + "…";
    kept.push({ at: new Date(), id: event.id, type: event.event_type, payload: payload, shown: false });
    if (kept.length > TAIL_ROWS) {
      const gone = kept.shift();
      if (!gone.shown) skipped += 1;
    }
    dirty = true;
  }

  function renderTail() {
    setText("tail-received", received);
    setText("tail-skipped", skipped);
    setText("tail-filtered", filtered);
    setText("tail-sampled", sampled);
    setText("tail-shown", kept.length);
    if (!dirty) return;
    dirty = false;
    const rows = [];
    for (let i = kept.length - 1; i >= 0; i--) {
      const e = kept[i];
      e.shown = true;
      const tr = document.createElement("tr");
      tr.dataset.id = String(e.id);
      cell(tr, e.at.toLocaleTimeString());
      cell(tr, e.id);
      cell(tr, e.type);
      cell(tr, e.payload);
      rows.push(tr);
    }
    byId("tail-body").replaceChildren(...rows);
  }

  filterBox.addEventListener("input", () => {
    kept = [];
    dirty = true;
    renderTail();
  });

  function base64url(text) {
    const bytes = new TextEncoder().encode(text);
    let binary = "";
    bytes.forEach((b) => { binary += String.fromCharCode(b); });
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const url = scheme + window.location.host + "/events?sample=" + TAIL_PER_SECOND;
    // Browsers cannot set headers on a WebSocket: the token travels as a
    // subprotocol (base64url), and the hub answers with "watchtower" only.
    const protocols = token ? ["watchtower", "watchtower.token." + base64url(token)] : ["watchtower"];
    const ws = new WebSocket(url, protocols);
    ws.addEventListener("open", () => badge("tail-status", "subscribed", true));
    ws.addEventListener("message", (m) => {
      if (typeof m.data === "string") onFrame(m.data);
    });
    ws.addEventListener("close", (c) => {
      badge("tail-status", "closed (" + c.code + "); reconnecting", false);
      setTimeout(connect, 2000);
    });
  }

  setText("tail-rate", TAIL_PER_SECOND);
  connect();
  poll();
  setInterval(poll, 1000);
  setInterval(renderTail, 200);
})();
