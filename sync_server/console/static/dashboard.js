// The live dashboard (templates/dashboard.html): draws the chart of entries per minute per gate
// with uPlot, and keeps every number fresh from the page's server-sent events
// (/console/events/{id}/dashboard/stream, `event: counts`). A file of our own, because the
// console's Content-Security-Policy forbids inline script; without it (or without uPlot) the
// page still shows every number as of when it was loaded, and the chart's sentence.
(function () {
  "use strict";

  if (window.GatehouseDashboard) {
    // Loaded again by an htmx page swap: the first copy does the work.
    window.GatehouseDashboard.scan(document);
    return;
  }

  // Dark enough on white for lines (>= 3:1), told apart by hue; more gates get more hues.
  var COLORS = ["#0b4f9c", "#b3261e", "#1d6b2f", "#8a4b00", "#6a1b9a", "#00695c",
                "#ad1457", "#37474f", "#4e5d00", "#0277bd"];
  var RETRY_AFTER_CLOSE_MS = 10000;

  function colorOf(i) {
    if (i < COLORS.length) return COLORS[i];
    return "hsl(" + Math.round((i * 137.508) % 360) + ", 70%, 32%)";
  }

  function chartData(chart) {
    var xs = [];
    for (var i = 0; i < chart.count; i++) xs.push(chart.start + i * chart.step);
    return [xs].concat(chart.series);
  }

  function chartWidth(el) {
    return Math.max(260, Math.floor(el.getBoundingClientRect().width) || 600);
  }

  function drawChart(state, chart) {
    if (!window.uPlot || !state.chartEl) return;
    var sameGates = state.plot && state.gates === chart.gates.join("\u0000");
    if (sameGates) {
      state.plot.setData(chartData(chart));
      return;
    }
    if (state.plot) state.plot.destroy();
    state.gates = chart.gates.join("\u0000");
    var uPlot = window.uPlot;
    // Times in the event's time zone, on a 24-hour clock.
    var local = function (ts) { return uPlot.tzDate(new Date(ts * 1000), chart.zone); };
    var clock = uPlot.fmtDate("{HH}:{mm}");
    state.plot = new uPlot({
      width: chartWidth(state.chartEl),
      height: 260,
      tzDate: local,
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(5, max)]; } } },
      axes: [
        { stroke: "#1a1a1a", values: function (u, splits) { return splits.map(function (ts) { return clock(local(ts)); }); } },
        { stroke: "#1a1a1a", label: "Entries per minute" },
      ],
      series: [{ label: "Time", value: function (u, ts) { return ts == null ? "–" : clock(local(ts)); } }].concat(chart.gates.map(function (gate, i) {
        return { label: gate, stroke: colorOf(i), width: 1.5, points: { show: false } };
      })),
    }, chartData(chart), state.chartEl);
  }

  function setStatus(state, text) {
    if (state.statusEl && state.statusEl.textContent !== text) state.statusEl.textContent = text;
  }

  function apply(state, message) {
    var region = state.root.querySelector("[data-live-region]");
    if (region) region.innerHTML = message.html;
    var caption = state.root.querySelector("[data-chart-caption]");
    if (caption) caption.textContent = message.caption;
    drawChart(state, message.chart);
    state.root.dispatchEvent(new CustomEvent("dashboard:updated", { bubbles: true }));
  }

  function stop(state) {
    if (state.source) state.source.close();
    state.source = null;
    if (state.retry) clearTimeout(state.retry);
    state.retry = null;
    if (state.resize) state.resize.disconnect();
    state.stopped = true;
  }

  function connect(state) {
    if (state.stopped) return;
    var source = new EventSource(state.root.getAttribute("data-stream"));
    state.source = source;
    source.addEventListener("open", function () {
      setStatus(state, "Live: the numbers change as the gates scan.");
    });
    source.addEventListener("counts", function (event) {
      if (!document.body.contains(state.root)) { stop(state); return; }
      apply(state, JSON.parse(event.data));
    });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        // Refused (signed out, the event is gone) or the server is restarting: the browser
        // will not try again by itself, so try once in a while; the page still shows the
        // last numbers.
        setStatus(state, "The live numbers stopped; trying again in a few seconds. " +
                         "If this stays, reload the page or sign in again.");
        state.source = null;
        state.retry = setTimeout(function () { state.retry = null; connect(state); },
                                 RETRY_AFTER_CLOSE_MS);
      } else {
        setStatus(state, "Connection lost; trying again…");
      }
    });
  }

  function start(root) {
    if (root.gatehouseDashboard) return;
    var state = {
      root: root,
      statusEl: root.querySelector("[data-live-status]"),
      chartEl: root.querySelector("[data-chart]"),
      plot: null, gates: null, source: null, retry: null, resize: null, stopped: false,
    };
    root.gatehouseDashboard = state;
    if (state.chartEl) {
      try { drawChart(state, JSON.parse(state.chartEl.getAttribute("data-chart"))); }
      catch (e) { /* the caption says what the chart would show */ }
      if (window.ResizeObserver) {
        state.resize = new ResizeObserver(function () {
          if (state.plot) state.plot.setSize({ width: chartWidth(state.chartEl), height: 260 });
        });
        state.resize.observe(state.chartEl);
      }
    }
    if (window.EventSource && root.getAttribute("data-stream")) connect(state);
  }

  function scan(within) {
    var found = (within || document).querySelectorAll("[data-dashboard]");
    for (var i = 0; i < found.length; i++) start(found[i]);
  }

  function stopWithin(target) {
    var found = document.querySelectorAll("[data-dashboard]");
    for (var i = 0; i < found.length; i++) {
      if (found[i].gatehouseDashboard && (!target || target.contains(found[i]))) {
        stop(found[i].gatehouseDashboard);
      }
    }
  }

  window.GatehouseDashboard = { scan: scan };
  // htmx (hx-boost) swaps pages in and out: start what comes in, stop what goes.
  document.addEventListener("htmx:load", function (event) { scan(event.target); });
  document.addEventListener("htmx:beforeSwap", function (event) { stopWithin(event.detail.target); });
  window.addEventListener("pagehide", function () { stopWithin(null); });
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) return;  // back from the browser's page cache: live again
    var found = document.querySelectorAll("[data-dashboard]");
    for (var i = 0; i < found.length; i++) {
      var state = found[i].gatehouseDashboard;
      if (state && state.stopped) { state.stopped = false; connect(state); }
    }
  });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { scan(document); });
  } else {
    scan(document);
  }
})();
