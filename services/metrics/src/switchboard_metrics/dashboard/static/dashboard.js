/*
  Switchboard ops dashboard. Reads, with the admin API key in the Authorization header:
    GET v1/kpis/stream?window=...&channel=...   Server-Sent Events (`event: kpis`, data: a KpiReport)
    GET v1/kpis?...                             the same report once (used only when there is no stream)
    GET v1/ops/health                           every service's readiness, every HEALTH_MS
  EventSource cannot send headers, so the stream is read with fetch() and parsed here. Everything shown
  is set with textContent: queue names, tags and errors are data, never markup.
*/
"use strict";
(function () {
  var KEY_STORE = "switchboard-dashboard:key";
  var FILTERS = ["channel", "queue", "agent_id", "tag"];
  var WINDOWS = ["live", "hour", "today"];
  var HEALTH_MS = 10000;
  var POLL_MS = 5000;
  var STALL_MS = 45000; // the server sends a keep-alive at least every 15 s: silence this long is a dead link
  var BACKOFF_MAX_MS = 30000;
  var UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  var SVG = "http://www.w3.org/2000/svg";
  var DASH = "\u2013";

  var state = {
    key: null,
    generation: 0, // bumped by every (re)start: callbacks of an older one do nothing
    controller: null,
    streamTimer: null,
    healthTimer: null,
    retry: 0,
  };

  function $(id) { return document.getElementById(id); }

  // --- formatting --------------------------------------------------------------------------------------

  function isNum(v) { return typeof v === "number" && isFinite(v); }

  function fmtInt(v) { return isNum(v) ? Math.round(v).toLocaleString("en-US") : DASH; }

  function fmtDuration(s) {
    if (!isNum(s)) return DASH;
    if (s < 0) s = 0;
    if (s < 10) return (Math.round(s * 10) / 10) + "s";
    if (s < 60) return Math.round(s) + "s";
    var total = Math.round(s);
    var d = Math.floor(total / 86400), h = Math.floor((total % 86400) / 3600);
    var m = Math.floor((total % 3600) / 60), sec = total % 60;
    if (d > 0) return d + "d " + h + "h";
    if (h > 0) return h + "h " + (m < 10 ? "0" : "") + m + "m";
    return m + "m " + sec + "s";
  }

  function fmtPct(share) {
    if (!isNum(share)) return DASH;
    var p = share * 100;
    if (p !== 0 && Math.abs(p) < 10) return (Math.round(p * 10) / 10) + "%";
    return Math.round(p) + "%";
  }

  function fmtMs(v) { return isNum(v) ? Math.round(v) + " ms" : DASH; }

  function parseTime(iso) {
    if (typeof iso !== "string") return null;
    var t = new Date(iso);
    return isNaN(t.getTime()) ? null : t;
  }

  function fmtClock(iso, withSeconds) {
    var t = parseTime(iso);
    if (!t) return DASH;
    var opts = { hour: "2-digit", minute: "2-digit", hour12: false };
    if (withSeconds) opts.second = "2-digit";
    return t.toLocaleTimeString("en-GB", opts);
  }

  function get(obj, path) {
    var parts = path.split(".");
    for (var i = 0; i < parts.length; i++) {
      if (obj === null || typeof obj !== "object") return undefined;
      obj = obj[parts[i]];
    }
    return obj;
  }

  // --- requests ----------------------------------------------------------------------------------------

  function apiUrl(path, params) {
    var url = new URL(path, document.baseURI); // relative: works behind a proxy that adds a path prefix
    Object.keys(params || {}).forEach(function (name) { url.searchParams.set(name, params[name]); });
    return url.toString();
  }

  function currentQuery() {
    var q = { window: $("window").value };
    FILTERS.forEach(function (name) {
      var v = $("f-" + name).value.trim();
      if (v) q[name] = v;
    });
    return q;
  }

  function headers(accept) {
    return { Authorization: "Bearer " + state.key, Accept: accept };
  }

  async function errorMessage(response) {
    try {
      var body = await response.json();
      var error = body && body.error;
      if (error && error.details && error.details.length && error.details[0].msg) {
        return error.message + ": " + error.details.map(function (d) {
          return (d.loc || []).slice(-1).join("") + " " + d.msg;
        }).join("; ");
      }
      if (error && error.message) return error.message;
    } catch (ignored) { /* not JSON: the status says enough */ }
    return "HTTP " + response.status;
  }

  function HttpError(status, message) { this.status = status; this.message = message; }

  async function fetchJson(path, params, signal) {
    var response = await fetch(apiUrl(path, params), {
      headers: headers("application/json"), cache: "no-store", signal: signal,
    });
    if (!response.ok) throw new HttpError(response.status, await errorMessage(response));
    return response.json();
  }

  // --- connection state, banner, sign-in ---------------------------------------------------------------

  function setConnection(kind, text) {
    var el = $("connection");
    el.className = "conn conn-" + kind;
    el.dataset.state = kind;
    el.textContent = text;
  }

  function showBanner(text) { var b = $("banner"); b.textContent = text; b.hidden = false; }
  function hideBanner() { $("banner").hidden = true; }

  function askForKey(message, refused) {
    var p = $("login-message");
    p.textContent = message;
    p.className = refused ? "refused" : "";
    var dialog = $("login");
    if (!dialog.open) dialog.showModal();
    $("key").value = "";
    $("key").focus();
  }

  function stop() {
    state.generation += 1;
    if (state.controller) state.controller.abort();
    state.controller = null;
    clearTimeout(state.streamTimer);
    clearTimeout(state.healthTimer);
  }

  function refused(status) {
    stop();
    state.key = null;
    sessionStorage.removeItem(KEY_STORE);
    setConnection("error", "signed out");
    askForKey(
      status === 403
        ? "That credential is not the admin API key (403). Enter the admin API key."
        : "The key was refused (401). Enter the admin API key.",
      true
    );
  }

  function start() {
    stop();
    hideBanner();
    state.retry = 0;
    var gen = state.generation;
    var q = currentQuery();
    if (q.agent_id && !UUID.test(q.agent_id)) {
      setConnection("error", "bad filter");
      showBanner("The agent filter takes an agent id (a UUID).");
      return;
    }
    connect(gen, q);
    refreshHealth(gen);
  }

  // --- the KPI stream ----------------------------------------------------------------------------------

  /* A Server-Sent Events parser (the WHATWG algorithm, without id/retry bookkeeping we do not need):
     lines end with CR, LF or CRLF; a blank line dispatches; lines starting with ':' are comments. */
  function SseParser(onEvent) {
    var buffer = "", data = [], event = "";
    function line(text) {
      if (text === "") {
        if (data.length) onEvent(event || "message", data.join("\n"));
        data = [];
        event = "";
        return;
      }
      if (text.charAt(0) === ":") return;
      var colon = text.indexOf(":");
      var field = colon < 0 ? text : text.slice(0, colon);
      var value = colon < 0 ? "" : text.slice(colon + 1);
      if (value.charAt(0) === " ") value = value.slice(1);
      if (field === "data") data.push(value);
      else if (field === "event") event = value;
    }
    this.feed = function (chunk) {
      buffer += chunk;
      var re = /\r\n|\r|\n/g, startAt = 0, m;
      while ((m = re.exec(buffer)) !== null) {
        if (m[0] === "\r" && m.index === buffer.length - 1) break; // maybe a CRLF split across chunks
        line(buffer.slice(startAt, m.index));
        startAt = re.lastIndex;
      }
      buffer = buffer.slice(startAt);
    };
  }

  function reconnectLater(gen, q, why) {
    if (gen !== state.generation) return;
    var delay = Math.min(BACKOFF_MAX_MS, 1000 * Math.pow(2, state.retry));
    delay = Math.round(delay * (0.5 + Math.random() / 2)); // jitter: many open pages do not reconnect together
    state.retry += 1;
    setConnection("reconnecting", "reconnecting in " + Math.ceil(delay / 1000) + "s");
    if (why) showBanner("Live updates interrupted: " + why);
    state.streamTimer = setTimeout(function () { connect(gen, q); }, delay);
  }

  async function connect(gen, q) {
    if (gen !== state.generation) return;
    setConnection(state.retry ? "reconnecting" : "connecting", state.retry ? "reconnecting" : "connecting");
    var controller = new AbortController();
    state.controller = controller;
    var response;
    try {
      response = await fetch(apiUrl("v1/kpis/stream", q), {
        headers: headers("text/event-stream"), cache: "no-store", signal: controller.signal,
      });
    } catch (e) {
      reconnectLater(gen, q, "the metrics service is unreachable");
      return;
    }
    if (gen !== state.generation) return;
    if (response.status === 401 || response.status === 403) { refused(response.status); return; }
    if (response.status === 404 || response.status === 405) { poll(gen, q); return; } // no stream here
    if (response.status === 422) {
      setConnection("error", "bad filter");
      showBanner("Filter refused: " + (await errorMessage(response)));
      return;
    }
    if (!response.ok || !response.body) {
      reconnectLater(gen, q, await errorMessage(response));
      return;
    }

    var stalled = null;
    function watch() {
      clearTimeout(stalled);
      stalled = setTimeout(function () { controller.abort(); }, STALL_MS);
    }
    var parser = new SseParser(function (name, data) {
      if (gen !== state.generation) return;
      if (name !== "kpis" && name !== "message") return;
      var report;
      try { report = JSON.parse(data); } catch (e) { return; }
      state.retry = 0;
      hideBanner();
      setConnection("live", "live");
      render(report);
    });
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    watch();
    try {
      for (;;) {
        var chunk = await reader.read();
        if (chunk.done) break;
        watch();
        parser.feed(decoder.decode(chunk.value, { stream: true }));
      }
    } catch (e) {
      /* aborted (a restart, or the stall watchdog) or the connection dropped: handled below */
    } finally {
      clearTimeout(stalled);
    }
    reconnectLater(gen, q, null);
  }

  // Without a stream endpoint (an older metrics service), poll the report instead.
  async function poll(gen, q) {
    if (gen !== state.generation) return;
    try {
      var report = await fetchJson("v1/kpis", q);
      if (gen !== state.generation) return;
      hideBanner();
      setConnection("polling", "polling");
      render(report);
    } catch (e) {
      if (gen !== state.generation) return;
      if (e.status === 401 || e.status === 403) { refused(e.status); return; }
      setConnection("reconnecting", "retrying");
      showBanner("KPIs unavailable: " + (e.message || e));
    }
    state.streamTimer = setTimeout(function () { poll(gen, q); }, POLL_MS);
  }

  // --- rendering the report ----------------------------------------------------------------------------

  function setTile(name, text) {
    var tile = document.querySelector('[data-kpi="' + name + '"]');
    if (!tile) return;
    var value = tile.querySelector(".value");
    if (value.textContent === text) return;
    var wasEmpty = value.textContent === DASH;
    value.textContent = text;
    tile.classList.toggle("empty", text === DASH);
    if (!wasEmpty && text !== DASH) {
      tile.classList.remove("changed");
      void tile.offsetWidth; // restart the highlight animation
      tile.classList.add("changed");
    }
  }

  function render(report) {
    if (!report || typeof report !== "object") return;
    setTile("waiting_now", fmtInt(report.waiting_now));
    setTile("longest_wait", fmtDuration(report.longest_wait_seconds));
    setTile("conversations_opened", fmtInt(get(report, "volume.conversations_opened")));
    setTile("messages_in", fmtInt(get(report, "volume.messages_in")));
    setTile("first_response_p50", fmtDuration(get(report, "times.first_response.p50")));
    setTile("first_response_p90", fmtDuration(get(report, "times.first_response.p90")));
    setTile("wait_p90", fmtDuration(get(report, "times.wait.p90")));
    setTile("service_level", fmtPct(get(report, "rates.service_level")));
    setTile("abandonment_rate", fmtPct(get(report, "rates.abandonment_rate")));
    setTile("first_contact_resolution", fmtPct(get(report, "rates.first_contact_resolution")));
    setTile("reopen_rate", fmtPct(get(report, "rates.reopen_rate")));
    setTile("multichannel_share", fmtPct(get(report, "volume.multichannel_share")));
    renderSatisfaction(report.satisfaction);
    setTile("sla_breaches", fmtInt(get(report, "routing.sla_breaches")));
    setTile("offer_acceptance", fmtPct(get(report, "routing.offers.acceptance_rate")));

    var updated = $("updated");
    updated.textContent = fmtClock(report.generated_at, true);
    updated.dateTime = typeof report.generated_at === "string" ? report.generated_at : "";
    var win = report.window || {};
    $("window-range").textContent =
      (win.name || DASH) + ": " + fmtClock(win.start, false) + " \u2192 " + fmtClock(win.end, false);

    drawChart($("chart-volume"), report, ["messages_in", "conversations_opened"], fmtInt, true);
    drawChart($("chart-wait"), report, ["wait_p50", "wait_p90"], fmtDuration, false);

    renderBreakdown(report.by_channel);
    renderDelivery(report.delivery);
    renderQueues(report.queues);
    renderAgents(report.agents);
    renderRouting(report.routing);
    fillSuggestions(report);
  }

  // The top of a chart's scale: the next "round" number at or above v (counts stay whole at half-height).
  function niceMax(v, whole) {
    v = Math.max(v, whole ? 2 : 0);
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = whole ? [1, 2, 4, 10] : [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v) return steps[i] * p;
    return 10 * p;
  }

  function svgEl(tag, attrs, text) {
    var el = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (name) { el.setAttribute(name, attrs[name]); });
    if (text !== undefined) el.textContent = text;
    return el;
  }

  /* Draws `keys` (fields of each point of the series) over the report's window into a 600x220 viewBox:
     counts as bars (a missing bucket had none), times as lines broken where a bucket has no value (a
     wait nobody had is not a zero wait). Buckets are a minute for windows up to two hours, else an hour. */
  function drawChart(svg, report, keys, fmt, bars) {
    var W = 600, H = 220, L = 56, R = 12, T = 12, B = 26;
    svg.replaceChildren();
    var points = (Array.isArray(report.series) ? report.series : []).filter(function (p) {
      return parseTime(p.at) !== null;
    });
    var max = 0, any = false;
    points.forEach(function (p) {
      keys.forEach(function (k) { if (isNum(p[k])) { any = true; max = Math.max(max, p[k]); } });
    });
    var win = report.window || {};
    var t0 = parseTime(win.start), t1 = parseTime(win.end);
    var times = points.map(function (p) { return parseTime(p.at).getTime(); });
    var start = t0 ? t0.getTime() : Math.min.apply(null, times);
    var end = t1 ? t1.getTime() : Math.max.apply(null, times);
    var bucket = end - start <= 2 * 3600 * 1000 ? 60 * 1000 : 3600 * 1000;
    if (times.length) end = Math.max(end, Math.max.apply(null, times) + bucket); // the last bucket, whole
    if (!points.length || !any || !(end > start)) {
      svg.appendChild(svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "nodata" },
        "no data in this window"));
      return;
    }
    var top = niceMax(max, bars);
    function x(t) { return L + Math.min(1, Math.max(0, (t - start) / (end - start))) * (W - L - R); }
    function y(v) { return T + (1 - v / top) * (H - T - B); }
    [0, 0.5, 1].forEach(function (f) {
      var yy = y(top * f);
      svg.appendChild(svgEl("line", { x1: L, x2: W - R, y1: yy, y2: yy, class: "grid" }));
      svg.appendChild(svgEl("text", { x: L - 6, y: yy + 4, "text-anchor": "end", class: "axis" }, fmt(top * f)));
    });
    [[start, "start"], [(start + end) / 2, "middle"], [end, "end"]].forEach(function (tick) {
      svg.appendChild(svgEl("text", { x: x(tick[0]), y: H - 6, "text-anchor": tick[1], class: "axis" },
        fmtClock(new Date(tick[0]).toISOString(), false)));
    });
    var slot = Math.max(1, x(start + bucket) - x(start));
    keys.forEach(function (k, s) {
      var d = "", last = null;
      points.forEach(function (p, i) {
        if (!isNum(p[k])) { last = null; return; }
        var label = fmtClock(p.at, false) + "  " + k.replace(/_/g, " ") + ": " + fmt(p[k]);
        var shape;
        if (bars) {
          var width = slot * 0.8 / keys.length;
          var left = x(times[i]) + slot * 0.1 + s * width;
          shape = svgEl("rect", { x: left.toFixed(1), y: y(p[k]).toFixed(1), width: Math.max(1, width).toFixed(1),
            height: Math.max(0, y(0) - y(p[k])).toFixed(1), class: "bar s" + s });
        } else {
          var cx = x(times[i] + bucket / 2), cy = y(p[k]);
          var joined = last !== null && times[i] - last <= bucket * 1.5;
          d += (joined ? " L" : " M") + cx.toFixed(1) + " " + cy.toFixed(1);
          last = times[i];
          shape = svgEl("circle", { cx: cx.toFixed(1), cy: cy.toFixed(1), r: s ? 4.5 : 2.5, class: "s" + s });
        }
        shape.appendChild(svgEl("title", {}, label));
        svg.appendChild(shape);
      });
      if (d) svg.insertBefore(svgEl("path", { d: d.trim(), class: "line s" + s }), svg.firstChild);
    });
  }

  function cell(text, cls, title) {
    var td = document.createElement("td");
    td.textContent = text === null || text === undefined || text === "" ? DASH : String(text);
    if (cls) td.className = cls;
    if (title) td.title = title;
    return td;
  }

  function fillTable(id, rows, toCells, emptyText) {
    var body = $(id).tBodies[0];
    var cols = $(id).tHead.rows[0].cells.length;
    var out = [];
    (Array.isArray(rows) ? rows : []).forEach(function (row) {
      var tr = document.createElement("tr");
      toCells(row).forEach(function (td) { tr.appendChild(td); });
      out.push(tr);
    });
    if (!out.length) {
      var tr = document.createElement("tr");
      var td = cell(emptyText, "empty");
      td.colSpan = cols;
      tr.appendChild(td);
      out.push(tr);
    }
    body.replaceChildren.apply(body, out);
  }

  function renderBreakdown(rows) {
    fillTable("by-channel", rows, function (r) {
      return [cell(r.key), cell(fmtInt(r.conversations_opened)), cell(fmtInt(r.conversations_resolved)),
        cell(fmtInt(r.messages_in)), cell(fmtDuration(r.wait_p90))];
    }, "no traffic in this window");
  }

  // Satisfaction: CSAT in percent (the API gives it as a percentage already), NPS signed from -100 to 100,
  // CES a mean on 1-7; each tile's tooltip says how many answers it stands on.
  var LOW_RATINGS_SHOWN = 10;

  function fmtNps(v) {
    if (!isNum(v)) return DASH;
    var n = Math.round(v);
    return n > 0 ? "+" + n : String(n);
  }

  function setAnswers(name, n) {
    var tile = document.querySelector('[data-kpi="' + name + '"]');
    if (tile) tile.title = isNum(n) ? fmtInt(n) + " answers in this window" : "";
  }

  function renderSatisfaction(s) {
    s = s && typeof s === "object" ? s : {};
    setTile("csat", isNum(s.csat_percent) ? fmtPct(s.csat_percent / 100) : DASH);
    setTile("nps", fmtNps(s.nps));
    setTile("ces", isNum(s.ces_mean) ? s.ces_mean.toFixed(1) : DASH);
    setAnswers("csat", s.csat_responses);
    setAnswers("nps", s.nps_responses);
    setAnswers("ces", s.ces_responses);
    var low = Array.isArray(s.low_ratings) ? s.low_ratings.slice(0, LOW_RATINGS_SHOWN) : [];
    fillTable("low-ratings", low, function (r) {
      var conversation = String(r.conversation_id || ""), agent = String(r.agent_id || "");
      return [cell(fmtClock(r.answered_at, false)), cell(String(r.kind || "").toUpperCase()),
        cell(fmtInt(r.score)), cell(r.channel), cell(conversation.slice(0, 8), "mono", conversation),
        cell(agent ? agent.slice(0, 8) : DASH, "mono", agent)];
    }, "no low ratings in this window");
  }

  // A count with its share of the messages reported, e.g. "12 (92%)".
  function countShare(n, share) {
    return isNum(share) ? fmtInt(n) + " (" + fmtPct(share) + ")" : fmtInt(n);
  }

  function renderDelivery(delivery) {
    var rows = delivery && Array.isArray(delivery.by_channel) ? delivery.by_channel : [];
    fillTable("delivery", rows, function (r) {
      return [cell(r.channel), cell(fmtInt(r.sent)), cell(countShare(r.delivered, r.delivered_rate)),
        cell(countShare(r.read, r.read_rate)), cell(countShare(r.failed, r.failed_rate)),
        cell(fmtDuration(get(r, "latency.p50"))), cell(fmtDuration(get(r, "latency.p90"))),
        cell(fmtDuration(get(r, "latency.p99")))];
    }, "no delivery reports in this window");
  }

  function renderQueues(rows) {
    fillTable("queues", rows, function (r) {
      var rates = r.rates || {};
      return [cell(r.queue === "" ? "(no queue)" : r.queue), cell(fmtInt(r.waiting_now)),
        cell(fmtDuration(r.longest_wait_seconds)), cell(fmtDuration(get(r, "wait.p50"))),
        cell(fmtDuration(get(r, "wait.p90"))), cell(fmtPct(rates.service_level)),
        cell(fmtPct(rates.abandonment_rate)), cell(fmtPct(rates.first_contact_resolution)),
        cell(fmtPct(rates.reopen_rate)), cell(fmtInt(r.conversations_opened))];
    }, "no queue activity in this window");
  }

  function statusTimes(seconds) {
    if (!seconds || typeof seconds !== "object") return DASH;
    var parts = Object.keys(seconds)
      .filter(function (k) { return isNum(seconds[k]) && seconds[k] > 0; })
      .sort(function (a, b) { return seconds[b] - seconds[a]; })
      .map(function (k) { return k + " " + fmtDuration(seconds[k]); });
    return parts.length ? parts.join(" · ") : DASH;
  }

  // "2 / 5 (40%)": what the agent holds now against their capacity; the count alone when the router never
  // told their capacity.
  function activeOfCapacity(r) {
    if (!isNum(r.capacity)) return fmtInt(r.active_conversations);
    var text = fmtInt(r.active_conversations) + " / " + fmtInt(r.capacity);
    return isNum(r.capacity_used) ? text + " (" + fmtPct(r.capacity_used) + ")" : text;
  }

  function renderAgents(rows) {
    fillTable("agents", rows, function (r) {
      var id = String(r.agent_id || "");
      return [cell(id.slice(0, 8), "mono", id), cell(r.status), cell(statusTimes(r.status_seconds)),
        cell(activeOfCapacity(r)), cell(fmtInt(r.assignments)), cell(fmtPct(r.assignment_share)),
        cell(fmtInt(r.handled)), cell(fmtDuration(get(r, "handle.p50"))), cell(fmtPct(r.occupancy))];
    }, "no agent activity in this window");
  }

  // Offers by agent, escalations and breaches by queue (docs/metrics.md, "routing").
  function renderRouting(routing) {
    var queues = routing && Array.isArray(routing.by_queue) ? routing.by_queue : [];
    fillTable("escalations", queues, function (r) {
      return [cell(r.queue), cell(fmtInt(r.escalations)), cell(fmtInt(r.sla_breaches))];
    }, "no escalations or breaches in this window");
    var agents = routing && Array.isArray(routing.offers_by_agent) ? routing.offers_by_agent : [];
    fillTable("offers", agents, function (r) {
      var id = String(r.agent_id || "");
      return [cell(id.slice(0, 8), "mono", id), cell(fmtInt(r.offered)),
        cell(countShare(r.accepted, r.acceptance_rate)), cell(fmtInt(r.declined)), cell(fmtInt(r.timed_out))];
    }, "no offers in this window");
  }

  function setOptions(id, values) {
    var list = $(id);
    var seen = {};
    var options = [];
    values.forEach(function (v) {
      if (typeof v !== "string" || v === "" || seen[v]) return;
      seen[v] = true;
      var o = document.createElement("option");
      o.value = v;
      options.push(o);
    });
    list.replaceChildren.apply(list, options);
  }

  function fillSuggestions(report) {
    function keys(rows, field) { return (Array.isArray(rows) ? rows : []).map(function (r) { return r[field]; }); }
    setOptions("queue-names", keys(report.queues, "queue").concat(keys(report.by_queue, "key")));
    setOptions("agent-ids", keys(report.agents, "agent_id"));
    setOptions("tags", keys(report.by_tag, "key"));
  }

  // --- service health ----------------------------------------------------------------------------------

  function level(status) {
    if (status === "ok" || status === true) return "ok";
    if (status === "unavailable" || status === "degraded") return "warn";
    return "bad";
  }

  // The check of one dependency, however the health report spells it: a boolean, "ok", or {ok|status}.
  function checkOf(service, names) {
    for (var i = 0; i < names.length; i++) {
      var v = get(service, names[i]);
      if (typeof v === "boolean") return v;
      if (typeof v === "string") return v === "ok";
      if (v && typeof v === "object") {
        if (typeof v.ok === "boolean") return v.ok;
        if (typeof v.status === "string") return v.status === "ok";
      }
    }
    return null;
  }

  function yesNo(v) { return v === null ? DASH : v ? "ok" : "down"; }

  function row(dl, label, value, cls) {
    var dt = document.createElement("dt");
    dt.textContent = label;
    var dd = document.createElement("dd");
    dd.textContent = value;
    if (cls) dd.className = cls;
    dl.appendChild(dt);
    dl.appendChild(dd);
  }

  function renderHealth(report) {
    var overall = $("health-overall");
    var status = typeof report.status === "string" ? report.status : DASH;
    overall.textContent = status + (report.checked_at ? " · " + fmtClock(report.checked_at, true) : "");
    overall.className = "pill " + level(report.status);
    var services = Array.isArray(report.services) ? report.services : [];
    var box = document.createElement("div");
    box.className = "services";
    services.forEach(function (s) {
      var card = document.createElement("div");
      card.className = "service " + level(s.status);
      card.dataset.service = String(s.name || "");
      card.dataset.status = String(s.status || "");
      var h = document.createElement("h3");
      var name = document.createElement("span");
      name.textContent = s.name || DASH;
      var pill = document.createElement("span");
      pill.className = "pill " + level(s.status);
      pill.textContent = s.status || DASH;
      h.appendChild(name);
      h.appendChild(pill);
      card.appendChild(h);
      var dl = document.createElement("dl");
      var db = checkOf(s, ["checks.database", "database_ok", "database"]);
      var broker = checkOf(s, ["checks.broker", "broker_ok", "broker"]);
      var relay = checkOf(s, ["checks.outbox_relay"]);
      row(dl, "database", yesNo(db), db === null ? "" : db ? "ok" : "bad");
      row(dl, "broker", yesNo(broker), broker === null ? "" : broker ? "ok" : "bad");
      if (relay !== null) row(dl, "outbox relay", yesNo(relay), relay ? "ok" : "bad");
      row(dl, "latency", fmtMs(s.latency_ms));
      if (isNum(s.http_status)) row(dl, "HTTP", String(s.http_status));
      var consumers = get(s, "checks.consumers") || s.consumers;
      consumers = Array.isArray(consumers) ? consumers : [];
      consumers.forEach(function (c) {
        var ok = typeof c.ok === "boolean" ? c.ok : null;
        row(dl, "lag " + (c.group || "consumer"), fmtInt(c.lag), ok === null ? "" : ok ? "ok" : "bad");
      });
      card.appendChild(dl);
      // `error` already sums up what is wrong with a service that is not ok; one that is ok may still
      // report problems of an advisory consumer, which are worth seeing.
      var problems = [];
      if (s.error) problems.push(String(s.error));
      else consumers.forEach(function (c) {
        (Array.isArray(c.problems) ? c.problems : []).forEach(function (p) {
          problems.push((c.group || "consumer") + ": " + String(p) + (c.advisory ? " (advisory)" : ""));
        });
      });
      problems.forEach(function (text) {
        var p = document.createElement("p");
        p.className = "problem";
        p.textContent = text;
        card.appendChild(p);
      });
      box.appendChild(card);
    });
    if (!services.length) {
      var empty = document.createElement("p");
      empty.className = "empty";
      empty.textContent = "no services configured";
      box.appendChild(empty);
    }
    $("health").replaceChildren(box);
  }

  function healthMessage(text) {
    var p = document.createElement("p");
    p.className = "empty";
    p.textContent = text;
    $("health").replaceChildren(p);
    $("health-overall").textContent = DASH;
    $("health-overall").className = "pill";
  }

  async function refreshHealth(gen) {
    if (gen !== state.generation) return;
    try {
      var report = await fetchJson("v1/ops/health", {});
      if (gen !== state.generation) return;
      renderHealth(report || {});
    } catch (e) {
      if (gen !== state.generation) return;
      if (e.status === 401 || e.status === 403) { refused(e.status); return; }
      healthMessage(e.status === 404 ? "the health view is not available on this service"
        : "health unavailable: " + (e.message || e));
    }
    state.healthTimer = setTimeout(function () { refreshHealth(gen); }, HEALTH_MS);
  }

  // --- controls ----------------------------------------------------------------------------------------

  // The window and filters live in the page's query string, so a view can be bookmarked or shared.
  function loadControls() {
    var params = new URLSearchParams(location.search);
    var w = params.get("window");
    if (WINDOWS.indexOf(w) >= 0) $("window").value = w;
    FILTERS.forEach(function (name) { $("f-" + name).value = params.get(name) || ""; });
  }

  function saveControls() {
    var q = currentQuery();
    var params = new URLSearchParams();
    Object.keys(q).forEach(function (k) { if (k !== "window" || q[k] !== "live") params.set(k, q[k]); });
    var search = params.toString();
    history.replaceState(null, "", location.pathname + (search ? "?" + search : ""));
  }

  function apply() {
    saveControls();
    if (state.key) start();
  }

  function init() {
    loadControls();
    $("controls").addEventListener("submit", function (e) { e.preventDefault(); apply(); });
    $("window").addEventListener("change", apply);
    $("clear-filters").addEventListener("click", function () {
      FILTERS.forEach(function (name) { $("f-" + name).value = ""; });
      apply();
    });
    $("sign-out").addEventListener("click", function (e) {
      e.preventDefault();
      stop();
      state.key = null;
      sessionStorage.removeItem(KEY_STORE);
      setConnection("idle", "signed out");
      askForKey("Signed out. Enter the admin API key to see the KPIs.", false);
    });
    $("login").addEventListener("cancel", function (e) { e.preventDefault(); }); // no data without a key
    $("login-form").addEventListener("submit", function (e) {
      e.preventDefault();
      var key = $("key").value.trim();
      if (!key) return;
      state.key = key;
      sessionStorage.setItem(KEY_STORE, key);
      $("login").close();
      start();
    });
    state.key = sessionStorage.getItem(KEY_STORE);
    if (state.key) start();
    else askForKey("Enter the admin API key to see the KPIs.", false);
  }

  init();
})();
