/* cttv2 dashboard: the live parts of the server-rendered pages (no framework, no build step).
 *
 * A page says what it is in <body data-page="..."> and hands its data over in a
 * <script type="application/json" id="page-data"> block (never executed; the CSP allows only
 * this file to run). Charts are SVG drawn here: a point is a <circle class="point"> and a
 * heatmap cell a <rect class="cell">, each with a <title> that shows its numbers on hover.
 */
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];
  const TERMINAL = ["succeeded", "failed", "cancelled"];

  function node(tag, attrs, parent, text) {
    const n = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, String(v));
    if (text !== undefined) n.textContent = text;
    if (parent) parent.appendChild(n);
    return n;
  }

  function pageData() {
    const n = document.getElementById("page-data");
    return n ? JSON.parse(n.textContent) : null;
  }

  function pct(v, digits) {
    return v === null || v === undefined ? "n/a" : (100 * v).toFixed(digits === undefined ? 2 : digits) + " %";
  }

  function fmtDuration(s) {
    if (s === null || s === undefined || !isFinite(s)) return "";
    s = Math.round(s);
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + String(s % 60).padStart(2, "0") + " s";
    return Math.floor(s / 3600) + " h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + " min";
  }

  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) { hi = lo + 1; }
    const raw = (hi - lo) / n;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map(m => m * mag).find(s => s >= raw) || raw;
    const ticks = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(+t.toFixed(10));
    return ticks;
  }

  function fmtTick(v, step) {  // as many decimals as the tick step needs
    const decimals = Math.max(0, Math.ceil(-Math.log10(step) - 1e-9) + (Math.abs(step / Math.pow(10, Math.floor(Math.log10(step))) - 2.5) < 1e-9 ? 1 : 0));
    return v.toFixed(Math.min(decimals, 8));
  }

  /* One panel of a chart: frame, ticks, labels; returns the x/y scales.
   * box: {x, y, w, h}; xs: numeric x domain [lo, hi] or a list of category labels. */
  function panel(svg, box, opts) {
    const g = node("g", { class: "panel" }, svg);
    const m = { l: 56, r: 12, t: 26, b: 40 };
    const pw = box.w - m.l - m.r, ph = box.h - m.t - m.b;
    const x0 = box.x + m.l, y0 = box.y + m.t;
    node("text", { x: x0 + pw / 2, y: box.y + 16, class: "title", "text-anchor": "middle" }, g, opts.title);
    node("rect", { x: x0, y: y0, width: pw, height: ph, class: "frame" }, g);
    const [ylo, yhi] = opts.ydomain;
    const ys = v => y0 + ph - ((v - ylo) / (yhi - ylo || 1)) * ph;
    const yticks = niceTicks(ylo, yhi, 5);
    const ystep = yticks.length > 1 ? yticks[1] - yticks[0] : 1;
    for (const t of yticks) {
      if (t < ylo - 1e-12 || t > yhi + 1e-12) continue;
      node("line", { x1: x0, x2: x0 + pw, y1: ys(t), y2: ys(t), class: "gridline" }, g);
      node("text", { x: x0 - 6, y: ys(t) + 4, "text-anchor": "end", class: "tick" }, g, opts.yfmt ? opts.yfmt(t, ystep) : fmtTick(t, ystep));
    }
    let xs;
    if (opts.categories) {
      const n = opts.categories.length;
      xs = i => x0 + ((i + 0.5) / n) * pw;
      opts.categories.forEach((c, i) => node("text", { x: xs(i), y: y0 + ph + 16, "text-anchor": "middle", class: "tick" }, g, c));
    } else {
      const [xlo, xhi] = opts.xdomain;
      xs = v => x0 + ((v - xlo) / (xhi - xlo || 1)) * pw;
      for (const t of niceTicks(xlo, xhi, Math.min(8, Math.max(1, xhi - xlo)))) {
        if (t < xlo || t > xhi || (opts.integerX && t !== Math.round(t))) continue;
        node("text", { x: xs(t), y: y0 + ph + 16, "text-anchor": "middle", class: "tick" }, g, String(t));
      }
    }
    node("text", { x: x0 + pw / 2, y: y0 + ph + 34, "text-anchor": "middle", class: "label" }, g, opts.xlabel || "");
    return { g, xs, ys };
  }

  function domain(values, pad, clampLo, clampHi) {
    let lo = Math.min(...values), hi = Math.max(...values);
    if (!isFinite(lo)) { lo = 0; hi = 1; }
    const span = hi - lo || Math.abs(hi) || 1;
    lo -= span * pad; hi += span * pad;
    if (clampLo !== undefined) lo = Math.max(lo, clampLo);
    if (clampHi !== undefined) hi = Math.min(hi, clampHi);
    return [lo, hi];
  }

  function drawSeries(p, s, color) {
    const pts = s.points.filter(([, y]) => y !== null && isFinite(y));
    if (pts.length > 1) {
      node("polyline", {
        points: pts.map(([x, y]) => p.xs(x) + "," + p.ys(y)).join(" "),
        class: "series" + (s.dashed ? " dashed" : ""), stroke: color,
      }, p.g);
    }
    for (const [x, y, label, href, std] of pts) {
      if (std) node("line", { x1: p.xs(x), x2: p.xs(x), y1: p.ys(y - std), y2: p.ys(y + std), stroke: color, class: "errorbar" }, p.g);
      const parent = href ? node("a", { href }, p.g) : p.g;
      const c = node("circle", { cx: p.xs(x), cy: p.ys(y), r: s.dashed ? 2.5 : 3.5, fill: color, class: "point" + (s.dashed ? " baseline" : ""), "data-series": s.name }, parent);
      node("title", {}, c, label || (s.name + ": " + y));
    }
  }

  function legend(el, items) {
    if (!el) return;
    el.textContent = "";
    for (const [name, color, dashed] of items) {
      const span = document.createElement("span");
      span.className = "key" + (dashed ? " dashed" : "");
      const sw = document.createElement("i");
      sw.style.borderColor = color;
      span.appendChild(sw);
      span.appendChild(document.createTextNode(name));
      el.appendChild(span);
    }
  }

  // -- the job page ------------------------------------------------------------------------

  function jobPage(data) {
    const svg = document.getElementById("curves");
    const series = data.series;
    const baseline = data.baseline ? data.baseline.series : null;
    let status = data.status;

    function drawCurves() {
      svg.textContent = "";
      const epochs = [].concat(...Object.values(series).map(s => s.map(p => p[0])));
      const maxEpoch = Math.max(1, ...epochs, ...(baseline ? baseline.test_accuracy.map(p => p[0]) : []));
      const losses = [].concat(series.train_loss, series.test_loss).map(p => p[1]);
      const lp = panel(svg, { x: 0, y: 0, w: 480, h: 300 }, {
        title: "loss", xlabel: "epoch", xdomain: [0, maxEpoch], integerX: true,
        ydomain: domain(losses.length ? losses : [0, 1], 0.08, 0),
      });
      drawSeries(lp, { name: "train_loss", points: series.train_loss.map(([e, v]) => [e, v, "epoch " + e + ": train loss " + v.toFixed(4)]) }, COLORS[0]);
      drawSeries(lp, { name: "test_loss", points: series.test_loss.map(([e, v]) => [e, v, "epoch " + e + ": test loss " + v.toFixed(4)]) }, COLORS[1]);
      const accs = series.test_accuracy.map(p => p[1]).concat(baseline ? baseline.test_accuracy.map(p => p[1]) : []);
      const ap = panel(svg, { x: 480, y: 0, w: 480, h: 300 }, {
        title: "test accuracy", xlabel: "epoch", xdomain: [0, maxEpoch], integerX: true,
        ydomain: domain(accs.length ? accs : [0, 1], 0.08, 0, 1),
        yfmt: (v, step) => fmtTick(100 * v, 100 * step) + "%",
      });
      if (baseline) {
        drawSeries(ap, { name: "baseline_test_accuracy", dashed: true, points: baseline.test_accuracy.map(([e, v]) => [e, v, "digital baseline (job " + data.baseline.id + "), epoch " + e + ": " + pct(v)]) }, "#555");
      }
      drawSeries(ap, { name: "test_accuracy", points: series.test_accuracy.map(([e, v]) => [e, v, "epoch " + e + ": test accuracy " + pct(v)]) }, COLORS[2]);
      const n = Math.max(...Object.values(series).map(s => s.length));
      svg.setAttribute("data-points", String(n));
      const keys = [["train loss", COLORS[0]], ["test loss", COLORS[1]], ["test accuracy", COLORS[2]]];
      if (baseline) keys.push(["digital baseline (job " + data.baseline.id + ")", "#555", true]);
      legend(document.getElementById("curves-legend"), keys);
    }

    function setStatus(s) {
      status = s;
      const el = document.getElementById("job-status");
      el.textContent = s;
      el.setAttribute("data-status", s);
      el.className = "badge " + s;
    }

    function setProgress(p) {
      if (!p) return;
      const bar = document.getElementById("job-progress");
      if (p.total_steps > 0) bar.value = Math.min(1, p.step / p.total_steps);
      let text = "epoch " + p.epoch + "/" + p.epochs;
      if (p.eta_s !== null && p.eta_s !== undefined && !TERMINAL.includes(status)) text += " · ETA " + fmtDuration(p.eta_s);
      document.getElementById("progress-text").textContent = text;
    }

    let panelTimer = null;
    function refreshPanel() {  // actions, error, result and artifacts, as the server renders them
      clearTimeout(panelTimer);
      panelTimer = setTimeout(() => {
        fetch(data.urls.panel, { credentials: "same-origin" })
          .then(r => (r.ok ? r.text() : Promise.reject(r.status)))
          .then(html => {
            const fresh = new DOMParser().parseFromString(html, "text/html");
            for (const id of ["job-head", "job-files"]) {
              const from = fresh.getElementById(id), to = document.getElementById(id);
              if (from && to) to.innerHTML = from.innerHTML;
            }
          })
          .catch(() => {});
      }, 300);
    }

    const log = document.getElementById("log");
    let logOffset = data.log_offset;
    let logDone = data.terminal;
    function pollLog() {
      fetch(data.urls.logs + "?offset=" + logOffset, { credentials: "same-origin" })
        .then(r => (r.ok ? r.json() : Promise.reject(r.status)))
        .then(page => {
          if (page.lines.length) {
            const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
            log.textContent += page.lines.join("\n") + "\n";
            const lines = log.textContent.split("\n");
            if (lines.length > 500) log.textContent = lines.slice(-500).join("\n");
            if (atEnd) log.scrollTop = log.scrollHeight;
          }
          logOffset = page.next_offset;
          logDone = page.done;
        })
        .catch(() => {})
        .finally(() => { if (!logDone) setTimeout(pollLog, TERMINAL.includes(status) ? 500 : 2000); });
    }

    drawCurves();
    setProgress(data.progress);
    document.getElementById("copy-spec").addEventListener("click", () => {
      const text = document.getElementById("spec-yaml").textContent;
      if (navigator.clipboard) navigator.clipboard.writeText(text).catch(() => {});
    });
    if (!data.terminal) {
      setTimeout(pollLog, 2000);
      const es = new EventSource(data.urls.events + "?last_event_id=" + data.last_event_id);
      es.addEventListener("status", ev => {
        const d = JSON.parse(ev.data);
        setStatus(d.status);
        refreshPanel();
        if (TERMINAL.includes(d.status)) {
          es.close();  // the server ends the stream: do not let EventSource reconnect
          setProgress(Object.assign({}, data.progress || {}, {}));
        }
      });
      es.addEventListener("progress", ev => { data.progress = JSON.parse(ev.data); setProgress(data.progress); });
      es.addEventListener("metrics", ev => {
        const d = JSON.parse(ev.data);
        for (const key of Object.keys(series)) {
          if (d.values[key] === undefined) continue;
          const s = series[key].filter(p => p[0] !== d.epoch);
          s.push([d.epoch, d.values[key]]);
          s.sort((a, b) => a[0] - b[0]);
          series[key] = s;
        }
        drawCurves();
        refreshPanel();  // a new checkpoint may be listed
      });
    }
  }

  // -- the sweep page ----------------------------------------------------------------------

  function show(v) { return typeof v === "number" ? String(+v.toPrecision(6)) : String(v); }

  function sweepFigure(svg, state) {
    svg.textContent = "";
    svg.setAttribute("viewBox", "0 0 960 360");
    const report = state.report;
    const axes = state.plot_axes;
    const algos = state.algorithms;
    const byAlgo = a => report.rows.filter(r => !report.axes.includes("algorithm") || r.point.algorithm === a);
    const acc = r => (r.mean_test_error === null ? null : 1 - r.mean_test_error);
    const tip = r => Object.entries(r.point).map(([k, v]) => k + "=" + show(v)).join(", ") +
      "\ntest accuracy " + pct(acc(r)) + (r.std_test_error !== null ? " ± " + (100 * r.std_test_error).toFixed(2) : "") +
      (r.delta_vs_baseline !== null ? "\nΔ vs digital " + (-100 * r.delta_vs_baseline).toFixed(2) + " points" : "") +
      "\n" + r.n_finished + "/" + r.n_seeds + " seeds finished";
    const href = r => (r.cell ? "#" + r.cell : null);
    const finished = report.rows.filter(r => acc(r) !== null);
    const baselineAcc = report.baseline && report.baseline.mean_test_error !== null ? 1 - report.baseline.mean_test_error : null;
    const legendItems = [];

    if (state.figure === "heatmap") {
      const [a0, a1] = axes;
      const uniq = vals => vals.filter((v, i) => vals.findIndex(w => show(w) === show(v)) === i);
      const v0 = uniq(report.rows.map(r => r.point[a0])), v1 = uniq(report.rows.map(r => r.point[a1]));
      const values = finished.map(acc);
      const lo = values.length ? Math.min(...values) : 0, hi = values.length ? Math.max(...values) : 1;
      const w = 960 / algos.length;
      algos.forEach((algo, k) => {
        const g = node("g", { class: "panel" }, svg);
        const m = { l: 90, t: 26, r: 10, b: 44 };
        const cw = (w - m.l - m.r) / v1.length, ch = (360 - m.t - m.b) / v0.length;
        node("text", { x: k * w + w / 2, y: 16, "text-anchor": "middle", class: "title" }, g, algo + " · test accuracy");
        for (const r of byAlgo(algo)) {
          const i = v0.findIndex(v => show(v) === show(r.point[a0])), j = v1.findIndex(v => show(v) === show(r.point[a1]));
          const a = acc(r);
          const parent = href(r) ? node("a", { href: href(r) }, g) : g;
          const t = a === null ? 0 : hi > lo ? (a - lo) / (hi - lo) : 0.5;
          const rect = node("rect", {
            x: k * w + m.l + j * cw, y: m.t + i * ch, width: cw - 2, height: ch - 2, class: "cell" + (a === null ? " empty" : ""),
            fill: a === null ? "#eee" : "hsl(" + (10 + 110 * t) + ",65%," + (72 - 22 * t) + "%)",
          }, parent);
          node("title", {}, rect, tip(r));
          node("text", { x: k * w + m.l + j * cw + cw / 2, y: m.t + i * ch + ch / 2 + 4, "text-anchor": "middle", class: "cell-text" }, parent, a === null ? "…" : (100 * a).toFixed(1));
        }
        v0.forEach((v, i) => node("text", { x: k * w + m.l - 6, y: m.t + i * ch + ch / 2 + 4, "text-anchor": "end", class: "tick" }, g, show(v)));
        v1.forEach((v, j) => node("text", { x: k * w + m.l + j * cw + cw / 2, y: 360 - m.b + 16, "text-anchor": "middle", class: "tick" }, g, show(v)));
        node("text", { x: k * w + m.l + (w - m.l - m.r) / 2, y: 360 - 8, "text-anchor": "middle", class: "label" }, g, a1);
        node("text", { x: k * w + 12, y: m.t - 8, class: "label" }, g, a0 + " ↓");
      });
      legendItems.push(["cells: test accuracy in %, red (low) to green (high); Δ vs digital in the tooltip", "#999"]);
    } else {
      // Lines: one panel per knob (a single panel for one axis, or a bar-like panel of all points).
      const knobs = state.figure === "bars" ? [null] : axes;
      // Up to 4 panels a row (the paper's study has 12 knobs: 3 rows of 4), 360 units high each.
      const cols = Math.min(knobs.length, 4), nrows = Math.ceil(knobs.length / cols);
      const w = 960 / cols;
      svg.setAttribute("viewBox", "0 0 960 " + 360 * nrows);
      // Crossed axes (a study's models and data subsets): one line per algorithm and crossed value.
      const crossed = (report.crossed || []).filter(a => a !== "algorithm");
      const facetOf = r => crossed.map(a => show(r.point[a])).join(" / ");
      const facetList = report.rows.map(facetOf).filter((f, i, all) => all.indexOf(f) === i);
      const series = algos.flatMap(algo => facetList.map(f => [algo, f, f ? algo + " · " + f : algo]));
      const accs = finished.map(acc).concat(baselineAcc !== null ? [baselineAcc] : []);
      const yd = domain(accs.length ? accs : [0, 1], 0.15, 0, 1);
      knobs.forEach((knob, k) => {
        const rows = knob === null ? report.rows
          : report.rows.filter(r => report.mode !== "one_at_a_time" || !r.knobs || r.knobs.includes(knob));
        const cats = [];
        const catOf = r => {
          const label = knob === null ? Object.entries(r.point).filter(([a]) => a !== "algorithm").map(([, v]) => show(v)).join(" / ") || "all" : show(r.point[knob]);
          if (!cats.includes(label)) cats.push(label);
          return cats.indexOf(label);
        };
        rows.forEach(catOf);
        const p = panel(svg, { x: (k % cols) * w, y: 360 * Math.floor(k / cols), w, h: 360 }, {
          title: knob === null ? "test accuracy per point" : "test accuracy vs " + knob, xlabel: knob || "",
          categories: cats, ydomain: yd, yfmt: (v, step) => fmtTick(100 * v, 100 * step) + "%",
        });
        if (baselineAcc !== null) {
          node("line", { x1: p.xs(-0.5), x2: p.xs(cats.length - 0.5), y1: p.ys(baselineAcc), y2: p.ys(baselineAcc), class: "series dashed", stroke: "#555" }, p.g);
        }
        series.forEach(([algo, facet, name], n) => {
          const pts = rows.filter(r => byAlgo(algo).includes(r) && facetOf(r) === facet && acc(r) !== null)
            .map(r => [catOf(r), acc(r), tip(r), href(r), r.std_test_error]).sort((a, b) => a[0] - b[0]);
          drawSeries(p, { name, points: pts }, COLORS[n % COLORS.length]);
        });
      });
      series.forEach(([, , name], n) => legendItems.push([name + " (mean ± std over seeds)", COLORS[n % COLORS.length]]));
      if (baselineAcc !== null) legendItems.push(["digital baseline " + pct(baselineAcc), "#555", true]);
    }
    legend(document.getElementById("sweep-legend"), legendItems);
  }

  function sweepPage(data) {
    const svg = document.getElementById("sweep-figure");
    sweepFigure(svg, data);
    const active = s => s === "queued" || s === "running";
    if (!active(data.status)) return;
    const tick = () => {
      fetch(data.urls.state, { credentials: "same-origin" })
        .then(r => (r.ok ? r.json() : Promise.reject(r.status)))
        .then(state => {
          sweepFigure(svg, state);
          return fetch(data.urls.panel, { credentials: "same-origin" })
            .then(r => (r.ok ? r.text() : Promise.reject(r.status)))
            .then(html => { document.getElementById("sweep-panel").innerHTML = html; return state; });
        })
        .then(state => { if (active(state.status)) setTimeout(tick, 3000); })
        .catch(() => setTimeout(tick, 10000));
    };
    setTimeout(tick, 3000);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const kind = document.body.getAttribute("data-page");
    const data = pageData();
    if (kind === "job" && data) jobPage(data);
    if (kind === "sweep" && data) sweepPage(data);
  });
})();
