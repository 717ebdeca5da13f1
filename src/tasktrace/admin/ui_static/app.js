// tasktrace dashboard: draws the page the path names from the JSON API.
//
// Everything the store holds was written by a program and may hold anything, so it reaches
// the page only as text nodes (textContent) and as SVG attribute values that are numbers;
// nothing here hands a string to the HTML parser, and links are built from fixed paths with the
// data URL-encoded into their query or last segment.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const params = new URLSearchParams(window.location.search);
  const main = document.getElementById("main");

  // -- building elements -----------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key === "href") node.setAttribute("href", value);
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
    }
    return node;
  }

  function svgEl(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    return node;
  }

  function svgText(x, y, text, anchor) {
    const node = svgEl("text", { x: x, y: y, "text-anchor": anchor || "start" });
    node.textContent = text;
    return node;
  }

  function titled(node, text) {
    const title = svgEl("title", {});
    title.textContent = text;
    node.append(title);
    return node;
  }

  // -- formatting ------------------------------------------------------------------------

  function ms(value) {
    if (value === null || value === undefined) return "-";
    if (value < 1) return value.toFixed(3);
    return value.toLocaleString("en-US", { maximumFractionDigits: 1, minimumFractionDigits: 1 });
  }

  // An axis label: "250 ms", "1.5 s".
  function compactMs(value) {
    if (value >= 1000) return +(value / 1000).toPrecision(3) + " s";
    return +value.toPrecision(3) + " ms";
  }

  function count(value) {
    return Number(value).toLocaleString("en-US");
  }

  function when(rfc3339) {
    // "2026-12-01T21:54:57.785Z" -> "2026-12-01 21:54:57" (UTC)
    return String(rfc3339).slice(0, 19).replace("T", " ");
  }

  function shortWhen(rfc3339) {
    return String(rfc3339).slice(5, 16).replace("T", " ");
  }

  function errorType(type) {
    return type && type.startsWith("builtins:") ? type.slice("builtins:".length) : type;
  }

  function cut(text, most) {
    text = String(text);
    return text.length > most ? text.slice(0, most - 1) + "\u2026" : text;
  }

  // A task name as a GLOB that matches only itself (the API's name is a GLOB).
  function globExact(name) {
    return name.replace(/[[*?]/g, (c) => "[" + c + "]");
  }

  // -- links -----------------------------------------------------------------------------

  function query(values) {
    const q = new URLSearchParams();
    for (const [key, value] of Object.entries(values)) {
      if (value !== null && value !== undefined && value !== "") q.set(key, value);
    }
    const text = q.toString();
    return text ? "?" + text : "";
  }

  function since() {
    return params.get("since") || "";
  }

  function taskHref(app, name) {
    return "/task" + query({ app: app, task: name, since: since() });
  }

  function traceHref(traceId) {
    return "/trace/" + encodeURIComponent(traceId);
  }

  async function api(route, values) {
    const response = await fetch("/api/" + route + query(values || {}), {
      headers: { Accept: "application/json" },
    });
    const body = await response.json().catch(() => ({ error: "the server's answer is not JSON" }));
    if (!response.ok) throw new Error(body.error || "HTTP " + response.status);
    return body;
  }

  function notice(text) {
    return el("p", { class: "notice" }, text);
  }

  // -- charts ----------------------------------------------------------------------------

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const m of [1, 2, 2.5, 5, 10]) if (value <= m * power) return m * power;
    return 10 * power;
  }

  // Calls (and errors over them) as bars per step.
  function barChart(series, opts) {
    const W = opts.width, H = opts.height, pad = opts.axes ? { l: 44, r: 8, t: 8, b: 18 } : { l: 0, r: 0, t: 1, b: 1 };
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, class: opts.cls, role: "img" });
    const points = series.points;
    const top = niceMax(Math.max(0, ...points.map((p) => p.calls)));
    const iw = W - pad.l - pad.r, ih = H - pad.t - pad.b;
    const [slot, left] = slots(points, iw);
    const gap = slot > 3 ? Math.min(2, slot * 0.2) : 0;
    if (opts.axes) axes(svg, points, pad, W, H, top, (v) => count(v), left);
    points.forEach((p, i) => {
      const x = pad.l + left + i * slot + gap / 2, w = Math.max(0.5, slot - gap);
      if (p.calls > 0) {
        const h = Math.max(1, (p.calls / top) * ih);
        svg.append(titled(svgEl("rect", { x: x, y: pad.t + ih - h, width: w, height: h, class: "bar-calls" }),
          `${when(p.t)} UTC: ${count(p.calls)} calls, ${count(p.errors)} errors`));
      }
      if (p.errors > 0) {
        const h = Math.max(1, (p.errors / top) * ih);
        svg.append(titled(svgEl("rect", { x: x, y: pad.t + ih - h, width: w, height: h, class: "bar-errors" }),
          `${when(p.t)} UTC: ${count(p.errors)} errors`));
      }
    });
    return svg;
  }

  // p50 and p95 as lines; a step without calls breaks the line.
  function latencyChart(series, opts) {
    const W = opts.width, H = opts.height, pad = { l: 44, r: 8, t: 8, b: 18 };
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, class: opts.cls, role: "img" });
    const points = series.points;
    const values = points.flatMap((p) => [p.p50_ms, p.p95_ms]).filter((v) => v !== null);
    const top = niceMax(Math.max(0, ...values));
    const iw = W - pad.l - pad.r, ih = H - pad.t - pad.b;
    const [slot, left] = slots(points, iw);
    const r = points.length < MIN_SLOTS ? 3 : 1.8;
    axes(svg, points, pad, W, H, top, compactMs, left);
    for (const [key, cls] of [["p50_ms", "line-p50"], ["p95_ms", "line-p95"]]) {
      // A step without calls has no percentile: the line joins the steps on either side,
      // and each step that has one gets a dot too, so a lone step still shows.
      let d = "";
      points.forEach((p, i) => {
        const v = p[key];
        if (v === null) return;
        const x = pad.l + left + (i + 0.5) * slot, y = pad.t + ih - (v / top) * ih;
        d += (d ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1) + " ";
        svg.append(titled(svgEl("circle", { cx: x.toFixed(1), cy: y.toFixed(1), r: r, class: "dot-" + cls }),
          `${when(p.t)} UTC: ${key.slice(0, 3)} ${ms(v)} ms`));
      });
      if (d) svg.append(svgEl("path", { d: d.trim(), class: cls }));
    }
    return svg;
  }

  // A step's width and where the first step starts: a short series (one window, say) is
  // drawn at the width of MIN_SLOTS steps, its latest step at the right, rather than as
  // one bar across the whole chart.
  const MIN_SLOTS = 30;
  function slots(points, width) {
    const slot = width / Math.max(MIN_SLOTS, points.length);
    return [slot, width - slot * points.length];
  }

  function axes(svg, points, pad, W, H, top, label, left) {
    const ih = H - pad.t - pad.b;
    svg.append(svgEl("line", { x1: pad.l, y1: pad.t + ih, x2: W - pad.r, y2: pad.t + ih, class: "axis" }));
    svg.append(svgEl("line", { x1: pad.l, y1: pad.t, x2: W - pad.r, y2: pad.t, class: "axis" }));
    svg.append(svgText(pad.l - 4, pad.t + 4, label(top), "end"));
    svg.append(svgText(pad.l - 4, pad.t + ih, "0", "end"));
    if (points.length) {
      // The first step's time, unless it would run into the last's.
      if (W - pad.r - (pad.l + left) > 130) {
        svg.append(svgText(pad.l + left, H - 4, shortWhen(points[0].t), left > 60 ? "middle" : "start"));
      }
      svg.append(svgText(W - pad.r, H - 4, shortWhen(points[points.length - 1].t), "end"));
    }
  }

  function stepText(seconds) {
    if (seconds % 86400 === 0) return seconds / 86400 + " d";
    if (seconds % 3600 === 0) return seconds / 3600 + " h";
    if (seconds % 60 === 0) return seconds / 60 + " min";
    return seconds + " s";
  }

  // -- the filter form -------------------------------------------------------------------

  function setUpFilters(page) {
    const form = document.getElementById("filters");
    for (const key of ["app", "since", "name"]) {
      const input = document.getElementById("f-" + key);
      input.value = params.get(key) || "";
    }
    if (page === "task") {
      // The task is fixed by the page: only the window can change; app and task ride along.
      document.getElementById("f-app").closest("label").classList.add("hidden");
      document.getElementById("f-name-label").classList.add("hidden");
      document.getElementById("f-app").disabled = true;
      document.getElementById("f-name").disabled = true;
      for (const key of ["app", "task"]) {
        form.append(el("input", { type: "hidden", name: key, value: params.get(key) || "" }));
      }
    } else if (page === "trace") {
      form.classList.add("hidden");
    }
    // Empty fields stay out of the URL.
    form.addEventListener("submit", () => {
      for (const input of form.querySelectorAll("input")) if (!input.value) input.disabled = true;
    });
    const current = { overview: "nav-overview", errors: "nav-errors", jobs: "nav-jobs" }[page];
    if (current) document.getElementById(current).classList.add("current");
    if (page === "jobs") document.getElementById("f-since").closest("label").classList.add("hidden");
    for (const id of ["nav-overview", "nav-errors", "nav-jobs"]) {
      const link = document.getElementById(id);
      link.setAttribute("href", link.getAttribute("href") + query({ app: params.get("app"), since: since() }));
    }
  }

  // -- pages -----------------------------------------------------------------------------

  async function overview() {
    document.title = "tasktrace: tasks";
    const filters = { app: params.get("app"), since: since(), name: params.get("name") };
    const [rows, warning] = await Promise.all([api("report", filters), attention()]);
    main.replaceChildren(el("h1", {}, "Tasks"), windowNote());
    if (warning) main.append(warning);
    if (!rows.length) {
      main.append(notice("No tasks in the store match these filters."));
      return;
    }
    const head = el("tr", {}, ...["App", "Name", "Group", "Calls", "Errors", "p50 ms", "p95 ms", "Max ms", "Calls over time"]
      .map((h, i) => el("th", { class: i >= 3 && i <= 7 ? "num" : "" }, h)));
    const body = el("tbody", {});
    const charts = [];
    for (const row of rows) {
      const chart = el("td", { class: "chart" });
      charts.push([row, chart]);
      body.append(el("tr", { class: "task-row" },
        el("td", {}, row.app),
        el("td", { class: "name" }, el("a", { href: taskHref(row.app, row.name), class: "task-link" }, row.name)),
        el("td", {}, row.group),
        el("td", { class: "num" }, count(row.calls)),
        el("td", { class: "num" + (row.errors ? " error-text" : "") }, count(row.errors)),
        el("td", { class: "num" }, ms(row.p50_ms)),
        el("td", { class: "num" }, ms(row.p95_ms)),
        el("td", { class: "num" }, ms(row.max_ms)),
        chart));
    }
    main.append(el("table", { id: "tasks" }, el("thead", {}, head), body),
      el("div", { class: "legend" }, el("span", { class: "k-calls" }, "calls"), el("span", { class: "k-errors" }, "errors")));
    // The sparklines of the first 50 tasks, a request each (the rest would only wait).
    await Promise.all(charts.slice(0, 50).map(async ([row, cell]) => {
      try {
        const series = await api("series", { app: row.app, name: globExact(row.name), since: since() });
        cell.append(barChart(series, { width: 180, height: 32, cls: "spark", axes: false }));
      } catch (err) {
        cell.append(el("span", { class: "muted" }, String(err.message)));
      }
    }));
  }

  function windowNote() {
    const text = since() ? `the last ${since()}` : "all stored data";
    const bits = [text];
    if (params.get("app")) bits.push("app " + params.get("app"));
    if (params.get("name")) bits.push("names matching " + params.get("name"));
    return el("p", { class: "muted" }, "Showing " + bits.join(", ") + ".");
  }

  function tracesTable(rows, id) {
    if (!rows.length) return el("p", { class: "muted" }, "No stored transactions.");
    const head = el("tr", {}, ...["Start (UTC)", "Duration ms", "Error", "Segments", "Trace"]
      .map((h, i) => el("th", { class: i === 1 || i === 3 ? "num" : "" }, h)));
    const body = el("tbody", {}, ...rows.map((t) => el("tr", {},
      el("td", {}, when(t.start)),
      el("td", { class: "num" }, ms(t.duration_ms)),
      el("td", { class: t.error ? "error-text" : "muted" }, t.error ? errorType(t.error) : "-"),
      el("td", { class: "num" }, count(t.segments)),
      el("td", {}, el("a", { href: traceHref(t.trace_id), class: "trace-link" }, t.trace_id.slice(0, 12))))));
    return el("table", { id: id }, el("thead", {}, head), body);
  }

  function errorGroups(groups, showTask) {
    if (!groups.length) return [el("p", { class: "muted" }, "No errors stored.")];
    return groups.map((g) => el("div", { class: "error-group" },
      el("div", { class: "title" }, errorType(g.type) + ": " + g.message),
      el("div", { class: "meta" },
        showTask ? el("a", { href: taskHref(g.app, g.name), class: "task-link" }, g.name) : null,
        showTask ? ` (${g.app}) · ` : "",
        `${count(g.count)} × · first ${when(g.first_seen)} · latest ${when(g.last_seen)} UTC`,
        el("a", { href: traceHref(g.trace_id), class: "trace-link" }, "latest trace " + g.trace_id.slice(0, 12))),
      el("details", { open: "" }, el("summary", {}, "traceback of the latest"), el("pre", {}, g.traceback))));
  }

  async function taskPage() {
    const app = params.get("app") || "", task = params.get("task") || "";
    document.title = "tasktrace: " + task;
    const filter = { app: app, name: globExact(task), since: since() };
    const [rows, series, recent, slowest, groups] = await Promise.all([
      api("report", filter),
      api("series", filter),
      api("traces", Object.assign({ limit: 10 }, filter)),
      api("traces", Object.assign({ limit: 10, slowest: 1 }, filter)),
      api("errors", filter),
    ]);
    const row = rows.find((r) => r.name === task) || null;
    main.replaceChildren(el("h1", {}, task), el("p", { class: "muted" }, `app ${app} · ` + (since() ? `the last ${since()}` : "all stored data")));
    if (row) {
      main.append(el("div", { class: "summary card" }, ...[
        ["calls", count(row.calls)], ["errors", count(row.errors)], ["p50 ms", ms(row.p50_ms)],
        ["p95 ms", ms(row.p95_ms)], ["max ms", ms(row.max_ms)], ["total ms", ms(row.total_ms)],
      ].map(([label, value]) => el("div", {}, el("span", { class: "value" }, value), el("span", { class: "label" }, label)))));
    } else {
      main.append(notice("No calls of this task in this window."));
    }
    main.append(el("div", { class: "cards" },
      el("div", { class: "card" }, el("h3", {}, `Calls and errors per ${stepText(series.step_s)}`),
        barChart(series, { width: 600, height: 180, cls: "chart", axes: true }),
        el("div", { class: "legend" }, el("span", { class: "k-calls" }, "calls"), el("span", { class: "k-errors" }, "errors"))),
      el("div", { class: "card" }, el("h3", {}, `Latency per ${stepText(series.step_s)}`),
        latencyChart(series, { width: 600, height: 180, cls: "chart" }),
        el("div", { class: "legend" }, el("span", { class: "k-p50" }, "p50"), el("span", { class: "k-p95" }, "p95")))));
    main.append(el("h2", {}, "Recent runs"), tracesTable(recent, "recent"));
    main.append(el("h2", {}, "Slowest runs"), tracesTable(slowest, "slowest"));
    main.append(el("h2", {}, "Errors"), ...errorGroups(groups, false));
  }

  async function errorsPage() {
    document.title = "tasktrace: errors";
    const groups = await api("errors", { app: params.get("app"), since: since(), name: params.get("name"), limit: 100 });
    main.replaceChildren(el("h1", {}, "Errors"), windowNote(), ...errorGroups(groups, true));
  }

  // -- liveness: scheduled jobs and running tasks (SPEC section 7) -------------------------

  const FAILING = new Set(["missed", "failed", "overdue", "lost"]);

  function statusBadge(status) {
    const kind = FAILING.has(status) ? "bad" : status === "late" ? "warn" : status === "new" ? "idle" : "good";
    return el("span", { class: "status status-" + kind }, status);
  }

  function duration(msValue) {
    if (msValue === null || msValue === undefined) return "-";
    const s = msValue / 1000;
    if (s < 1) return Math.round(msValue) + " ms";
    if (s < 120) return s.toFixed(1) + " s";
    if (s < 7200) return (s / 60).toFixed(1) + " min";
    if (s < 172800) return (s / 3600).toFixed(1) + " h";
    return (s / 86400).toFixed(1) + " d";
  }

  function checkTable(tasks) {
    if (!tasks.length) return el("p", { class: "muted" }, "No scheduled tasks: add schedule = \"...\" to a [[background_task]] in the config.");
    const head = el("tr", {}, ...["Status", "App", "Name", "Schedule", "Last start (UTC)", "Took", "Last error", "Next due (UTC)"]
      .map((h, i) => el("th", { class: i === 5 ? "num" : "" }, h)));
    const body = el("tbody", {}, ...tasks.map((t) => el("tr", { class: "check-row" },
      el("td", {}, statusBadge(t.status)),
      el("td", {}, t.app),
      el("td", { class: "name" }, el("a", { href: taskHref(t.app, t.name), class: "task-link" }, t.name)),
      el("td", {}, t.schedule + (t.timezone ? " (" + t.timezone + ")" : "")),
      el("td", {}, t.last_start ? when(t.last_start) : "never"),
      el("td", { class: "num" }, duration(t.last_duration_ms)),
      el("td", { class: t.last_error ? "error-text" : "muted" }, t.last_error ? errorType(t.last_error) : "-"),
      el("td", {}, when(t.next_due)))));
    return el("table", { id: "check" }, el("thead", {}, head), body);
  }

  function runningTable(entries) {
    if (!entries.length) return el("p", { class: "muted" }, "Nothing is running longer than a harvest interval, and no task was lost.");
    const head = el("tr", {}, ...["Status", "App", "Name", "Host", "PID", "Started (UTC)", "Elapsed", "Limit", "Trace"]
      .map((h, i) => el("th", { class: i === 4 || i === 6 || i === 7 ? "num" : "" }, h)));
    const body = el("tbody", {}, ...entries.map((r) => el("tr", { class: "running-row" },
      el("td", {}, statusBadge(r.status)),
      el("td", {}, r.app),
      el("td", { class: "name" }, el("a", { href: taskHref(r.app, r.name), class: "task-link" }, r.name)),
      el("td", {}, r.host),
      el("td", { class: "num" }, String(r.pid)),
      el("td", {}, when(r.started)),
      el("td", { class: "num" }, duration(r.elapsed_ms)),
      el("td", { class: "num" }, duration(r.max_duration_ms)),
      el("td", {}, el("span", { class: "muted" }, r.trace_id.slice(0, 12))))));
    return el("table", { id: "running" }, el("thead", {}, head), body);
  }

  async function jobsPage() {
    document.title = "tasktrace: jobs";
    const filters = { app: params.get("app"), name: params.get("name") };
    const [tasks, entries] = await Promise.all([api("check", filters), api("running", filters)]);
    main.replaceChildren(
      el("h1", {}, "Jobs"),
      el("h2", {}, "Scheduled"),
      checkTable(tasks),
      el("h2", {}, "Running now"),
      runningTable(entries),
      el("p", { class: "muted" }, "Lost: the process ended (or stopped reporting) while the task ran. Overdue: running past its max_duration. Missed: due, and not started within its grace."));
  }

  // A line over the tasks table when a job needs attention (the API may be absent on old stores).
  async function attention() {
    try {
      const [tasks, entries] = await Promise.all([api("check", {}), api("running", {})]);
      const bad = tasks.filter((t) => FAILING.has(t.status)).map((t) => t.name + " (" + t.status + ")")
        .concat(entries.filter((r) => FAILING.has(r.status) && !tasks.some((t) => t.app === r.app && t.name === r.name))
          .map((r) => r.name + " (" + r.status + ")"));
      if (!bad.length) return null;
      return el("p", { class: "notice attention" }, "Needs attention: " + cut(bad.join(", "), 300) + " ",
        el("a", { href: "/jobs" + query({ app: params.get("app") }) }, "see Jobs"));
    } catch (err) {
      return null;
    }
  }

  async function tracePage(traceId) {
    document.title = "tasktrace: trace " + traceId.slice(0, 12);
    const trace = await api("trace/" + encodeURIComponent(traceId));
    const txns = trace.transactions;
    main.replaceChildren(el("h1", {}, "Trace " + trace.trace_id),
      el("p", { class: "muted" }, `${txns.length} transaction${txns.length === 1 ? "" : "s"}`));
    const spans = new Set(txns.map((t) => t.span_id));
    const children = new Map();
    for (const t of txns) {
      const parent = spans.has(t.parent_span_id) ? t.parent_span_id : null;
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(t);
    }
    const drawn = new Set();
    function draw(t, into, depth) {
      drawn.add(t);
      const box = transaction(t, depth);
      into.append(box);
      for (const child of children.get(t.span_id) || []) if (!drawn.has(child)) draw(child, box, depth + 1);
    }
    for (const root of children.get(null) || []) draw(root, main, 0);
    for (const t of txns) if (!drawn.has(t)) draw(t, main, 0); // a loop of parents
  }

  function transaction(t, depth) {
    const box = el("section", { class: "txn" + (depth ? " child" : "") });
    box.append(el("div", { class: "head" },
      el("a", { href: taskHref(t.app, t.name), class: "task-link" }, t.name), ` · ${t.app} · [${t.group}]`));
    const facts = [
      ["start", when(t.start) + " UTC"], ["duration", ms(t.duration_ms) + " ms"],
      ["exclusive", ms(t.exclusive_ms) + " ms"], ["pid", String(t.pid)], ["host", t.host === null ? "-" : t.host],
      ["span", t.span_id],
    ];
    if (t.parent_span_id) facts.push(["parent span", t.parent_span_id]);
    for (const key of Object.keys(t.attributes).sort()) facts.push(["attr " + key, String(t.attributes[key])]);
    box.append(el("dl", {}, ...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])));
    if (t.error) {
      box.append(el("div", { class: "error-text" }, errorType(t.error.type) + ": " + t.error.message),
        el("pre", {}, t.error.traceback));
    }
    box.append(waterfall(t));
    return box;
  }

  // The transaction and its function traces as bars on one time axis, nesting indented.
  function waterfall(t) {
    const rows = [{ name: t.name, start: 0, duration: t.duration_ms, depth: 0, root: true }];
    const depth = [];
    t.segments.forEach((s, i) => {
      depth[i] = s.parent === null ? 1 : depth[s.parent] + 1;
      rows.push({ name: s.name, start: s.start_offset_ms, duration: s.duration_ms, depth: depth[i], root: false });
    });
    const W = 1000, labelW = 330, numW = 80, rowH = 20, top = 16;
    const barW = W - labelW - numW - 10;
    const H = top + rows.length * rowH + 4;
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart waterfall", role: "img" });
    const total = t.duration_ms > 0 ? t.duration_ms : 1;
    for (const frac of [0, 0.25, 0.5, 0.75, 1]) {
      const x = labelW + frac * barW;
      svg.append(svgEl("line", { x1: x, y1: top - 4, x2: x, y2: H, class: "wf-grid" }));
      svg.append(svgText(x, 10, frac ? ms(frac * t.duration_ms) + " ms" : "0", frac === 0 ? "start" : frac === 1 ? "end" : "middle"));
    }
    rows.forEach((r, i) => {
      const y = top + i * rowH;
      const label = svgText(4 + Math.min(r.depth, 12) * 12, y + 14, cut(r.name, 44 - Math.min(r.depth, 12)));
      svg.append(titled(label, r.name));
      const x = labelW + Math.min(1, r.start / total) * barW;
      const w = Math.max(1.5, Math.min(barW - (x - labelW), (r.duration / total) * barW));
      const cls = "wf-bar" + (r.root ? (t.error ? " err" : " root") : "");
      svg.append(titled(svgEl("rect", { x: x, y: y + 4, width: w, height: rowH - 8, rx: 2, class: cls }),
        `${r.name}: ${ms(r.duration)} ms at +${ms(r.start)} ms`));
      svg.append(svgText(W - 4, y + 14, ms(r.duration) + " ms", "end"));
    });
    return el("div", { class: "card" }, el("h3", {}, t.segments.length ? "Function traces" : "No function traces"), svg);
  }

  // -- routing ---------------------------------------------------------------------------

  async function start() {
    const path = window.location.pathname;
    let page, draw;
    if (path === "/" || path === "") [page, draw] = ["overview", overview];
    else if (path === "/task") [page, draw] = ["task", taskPage];
    else if (path === "/errors") [page, draw] = ["errors", errorsPage];
    else if (path === "/jobs") [page, draw] = ["jobs", jobsPage];
    else if (path.startsWith("/trace/")) {
      const id = decodeURIComponent(path.slice("/trace/".length));
      [page, draw] = ["trace", () => tracePage(id)];
    } else [page, draw] = ["overview", overview];
    setUpFilters(page);
    try {
      await draw();
    } catch (err) {
      main.replaceChildren(notice("Cannot show this page: " + String(err.message)));
    }
    document.body.setAttribute("data-ready", "1");
  }

  start();
})();
