/* Junction charts: uPlot charts drawn from JSON data blocks (no inline script).
 *
 * Markup: an element with data-chart="sparkline" or data-chart="timeseries" holding one
 *   <script type="application/json">{...}</script>
 * child with its data (render it with Jinja's |tojson). In markup htmx swaps in, give the
 * data as a single-quoted attribute instead, data-chart-json='{{ data|tojson }}': htmx
 * drops every <script> of a response when allowScriptTags is off. Every such element is drawn on
 * page load and after htmx swaps content in; after inserting markup yourself call
 * Junction.charts.draw(rootElement). Sparklines are drawn when scrolled into view (a grid
 * of 1,000 rows draws only what is visible). Without uPlot installed (npm ci) nothing is
 * drawn and the page still works.
 *
 * Data formats (every array has the length of "t"; gaps are null):
 *   sparkline:  {"t": [epoch seconds, ...], "y": [number|null, ...]}
 *               or, evenly spaced: {"start": epoch seconds, "step": seconds, "y": [...]}
 *   timeseries: {
 *     "t": [epoch seconds, ...],
 *     "series": [{"label": "p95", "values": [...], "color": "#2563eb"}],  // color optional
 *     "band":   {"label": "forecast", "lower": [...], "upper": [...]},     // optional, shaded
 *     "points": [{"label": "anomaly", "values": [null, 812, ...], "color": "#dc2626"}],
 *                                                    // optional: markers only, no line
 *     "y_label": "ms",                                // optional axis label
 *     "height": 220                                   // optional, px
 *   }
 */
(function () {
  "use strict";

  const SPARK_WIDTH = 120;  // fixed: every row's sparkline on the same scale and size
  const PALETTE = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#0891b2", "#db2777"];

  function readData(el) {
    const block = el.querySelector('script[type="application/json"]');
    const text = block ? block.textContent : el.getAttribute("data-chart-json");
    if (!text) return null;
    try { return JSON.parse(text); } catch (e) { return null; }
  }

  function clear(el) {
    el.querySelectorAll(".uplot").forEach(function (node) { node.remove(); });
  }

  function sparkline(el, data) {
    if (data && !data.t && data.y && typeof data.start === "number") {
      data = { t: data.y.map(function (_, i) { return data.start + i * (data.step || 60); }),
               y: data.y };
    }
    if (!data || !data.t || data.t.length < 2) {
      el.classList.add("nodata");
      return;
    }
    // A value with gaps on both sides draws no line: show the values as dots then.
    const sparse = hasIsolated(data.y);
    const first = data.t[0];
    const last = data.t[data.t.length - 1];
    const opts = {
      width: SPARK_WIDTH, height: 28, padding: [4, 5, 4, 5],
      legend: { show: false }, cursor: { show: false }, select: { show: false },
      axes: [{ show: false }, { show: false }],
      // The whole span, not just where there is data: every row on the same time axis.
      scales: { x: { time: false, range: function () { return [first, last]; } } },
      series: [{}, { stroke: "#2563eb", width: 1.25, fill: "rgba(37,99,235,0.08)",
                     points: { show: sparse, size: 4, fill: "#2563eb" }, spanGaps: false }],
    };
    clear(el);
    new uPlot(opts, [data.t, data.y], el);
  }

  function hasIsolated(values) {
    for (let i = 0; i < values.length; i++) {
      if (values[i] !== null && (i === 0 || values[i - 1] === null) &&
          (i === values.length - 1 || values[i + 1] === null)) return true;
    }
    return false;
  }

  function timeseries(el, data) {
    if (!data || !data.t || data.t.length === 0) {
      el.classList.add("nodata");
      return;
    }
    const series = [{}];
    const columns = [data.t];
    const bands = [];
    (data.series || []).forEach(function (s, i) {
      const color = s.color || PALETTE[i % PALETTE.length];
      // A value with gaps on both sides draws no line: show the values as dots then.
      series.push({ label: s.label, stroke: color, width: 1.5,
                    points: { show: hasIsolated(s.values), size: 5, fill: color } });
      columns.push(s.values);
    });
    if (data.band) {
      const upper = series.length;
      series.push({ label: (data.band.label || "band") + " high", stroke: "rgba(100,116,139,0.5)",
                    width: 1, dash: [4, 4], points: { show: false } });
      columns.push(data.band.upper);
      series.push({ label: (data.band.label || "band") + " low", stroke: "rgba(100,116,139,0.5)",
                    width: 1, dash: [4, 4], points: { show: false } });
      columns.push(data.band.lower);
      bands.push({ series: [upper, upper + 1], fill: "rgba(100,116,139,0.15)" });
    }
    (data.points || []).forEach(function (p) {
      series.push({ label: p.label, stroke: p.color || "#dc2626", fill: p.color || "#dc2626",
                    paths: function () { return null; }, points: { show: true, size: 8 } });
      columns.push(p.values);
    });
    const opts = {
      width: Math.max(200, el.clientWidth || 600), height: data.height || 220,
      series: series, bands: bands,
      axes: [{}, { label: data.y_label || "", size: 60 }],
    };
    clear(el);
    const chart = new uPlot(opts, columns, el);
    if (window.ResizeObserver) {
      new ResizeObserver(function () {
        chart.setSize({ width: Math.max(200, el.clientWidth), height: opts.height });
      }).observe(el);
    }
  }

  const DRAW = { sparkline: sparkline, timeseries: timeseries };

  function drawOne(el) {
    const kind = el.dataset.chart;
    if (!DRAW[kind] || el.dataset.drawn === "1") return;
    el.dataset.drawn = "1";
    DRAW[kind](el, readData(el));
  }

  const observer = window.IntersectionObserver ? new IntersectionObserver(function (entries) {
    entries.forEach(function (entry) {
      if (entry.isIntersecting) {
        observer.unobserve(entry.target);
        drawOne(entry.target);
      }
    });
  }, { rootMargin: "200px" }) : null;

  function draw(root) {
    if (typeof window.uPlot === "undefined") return;
    const scope = root || document;
    const found = scope.querySelectorAll ? scope.querySelectorAll("[data-chart]") : [];
    const all = (scope.dataset && scope.dataset.chart) ? [scope].concat(Array.from(found)) : found;
    all.forEach(function (el) {
      if (el.dataset.chart === "sparkline" && observer) observer.observe(el);
      else drawOne(el);
    });
  }

  window.Junction = Object.assign(window.Junction || {}, { charts: { draw: draw } });
  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:load", function (event) { draw(event.detail.elt); });
})();
