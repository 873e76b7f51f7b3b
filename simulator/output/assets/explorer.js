/* RecWorld run explorer.  Reads the JSON in <script id="recworld-data"> and draws the page:
   no libraries, no network (except, when served by `recworld view`, user/ID.json from the
   same loopback server).  Every text from the run goes through esc() before it is shown. */
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("recworld-data").textContent);
  var COLORS = ["#2f6fd6", "#d9822b", "#1f8a4c", "#b83280", "#6b46c1", "#c53030", "#2c7a7b", "#718096", "#975a16", "#3182ce"];

  // ------------------------------------------------------------------ helpers
  function esc(s) {
    if (s === null || s === undefined) return "";
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  }
  function $(sel, root) { return (root || document).querySelector(sel); }
  function $all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
  function el(tag, attrs, html) {
    var e = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (html !== undefined) e.innerHTML = html;
    return e;
  }
  function num(v, digits) {
    if (v === null || v === undefined || (typeof v === "number" && !isFinite(v))) return "–";
    if (typeof v !== "number") return esc(v);
    if (Number.isInteger(v)) return v.toLocaleString("en-US");
    var a = Math.abs(v);
    var d = digits !== undefined ? digits : (a >= 100 ? 1 : a >= 10 ? 2 : a >= 1 ? 3 : 4);
    return v.toLocaleString("en-US", { minimumFractionDigits: 0, maximumFractionDigits: d });
  }
  function clock(t) {
    if (t === null || t === undefined) return "";
    var day = Math.floor(t / 1440) + 1, m = Math.floor(t % 1440);
    var hh = Math.floor(m / 60), mm = m % 60;
    return "day " + day + " " + (hh < 10 ? "0" : "") + hh + ":" + (mm < 10 ? "0" : "") + mm;
  }
  function hours(t) { return num(t / 60, 1) + " h"; }
  var ITEMS = DATA.items || {};
  function addItems(map) { if (map) Object.keys(map).forEach(function (k) { ITEMS[k] = map[k]; }); }
  function item(id) {
    if (id === null || id === undefined) return "<span class='muted'>?</span>";
    var it = ITEMS[id];
    var title = it ? it[0] : "item " + id;
    var tip = "item " + id + (it && it[1] ? " · " + it[1] : "");
    return "<span class='item' data-item='" + esc(id) + "' title='" + esc(tip) + "'>" + esc(title) + "</span>";
  }
  function ulink(id) {
    if (id === null || id === undefined) return "?";
    return "<a class='u' href='#user=" + esc(id) + "' data-user='" + esc(id) + "'>user " + esc(id) + "</a>";
  }
  function stars(r) { return r === null || r === undefined ? "" : "<span class='stars'>" + num(r, 1) + "/5</span>"; }

  // ------------------------------------------------------------------ charts (SVG)
  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) { hi = lo + 1; }
    var span = hi - lo, step = Math.pow(10, Math.floor(Math.log10(span / n)));
    var err = n / span * step;
    if (err <= 0.15) step *= 10; else if (err <= 0.35) step *= 5; else if (err <= 0.75) step *= 2;
    var ticks = [], start = Math.ceil(lo / step - 1e-9) * step;
    for (var v = start; v <= hi + step * 1e-6; v += step) ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    return ticks;
  }
  function fmtTick(v) {
    var a = Math.abs(v);
    if (a >= 10000) return (v / 1000).toLocaleString("en-US", { maximumFractionDigits: 1 }) + "k";
    return v.toLocaleString("en-US", { maximumFractionDigits: a >= 10 ? 0 : a >= 1 ? 2 : 4 });
  }
  /* opts: {title, x: [], xlabel, ylabel, series: [{name, y, lo, hi, color, dash}], ymin0, height,
            xfmt(x) -> label for the tooltip, square} */
  function lineChart(container, opts) {
    var box = el("div", { "class": "chart" });
    if (opts.id) box.id = opts.id;
    box.appendChild(el("div", { "class": "ttl" }, esc(opts.title || "")));
    var legend = el("div", { "class": "legend" });
    box.appendChild(legend);
    var holder = el("div");
    box.appendChild(holder);
    var tip = el("div", { "class": "tip" });
    box.appendChild(tip);
    container.appendChild(box);
    var hidden = {};
    opts.series.forEach(function (s, i) {
      s.color = s.color || COLORS[i % COLORS.length];
      var sp = el("span", { "data-series": s.name }, "<i style='background:" + s.color + "'></i>" + esc(s.name));
      sp.addEventListener("click", function () { hidden[s.name] = !hidden[s.name]; sp.classList.toggle("off"); draw(); });
      legend.appendChild(sp);
    });
    function draw() {
      var W = opts.width || 640, H = opts.height || 260, m = { l: 54, r: 14, t: 8, b: 40 };
      var xs = opts.x, vis = opts.series.filter(function (s) { return !hidden[s.name]; });
      var xmin = Math.min.apply(null, xs), xmax = Math.max.apply(null, xs);
      if (!(xmax > xmin)) xmax = xmin + 1;
      var ys = [];
      vis.forEach(function (s) { [s.y, s.lo, s.hi].forEach(function (arr) { (arr || []).forEach(function (v) { if (v !== null && isFinite(v)) ys.push(v); }); }); });
      var ymin = ys.length ? Math.min.apply(null, ys) : 0, ymax = ys.length ? Math.max.apply(null, ys) : 1;
      if (opts.ymin0 !== false) ymin = Math.min(0, ymin);
      if (opts.ymax !== undefined) ymax = opts.ymax;
      if (!(ymax > ymin)) ymax = ymin + 1;
      ymax += (ymax - ymin) * 0.04;
      var X = function (v) { return m.l + (v - xmin) / (xmax - xmin) * (W - m.l - m.r); };
      var Y = function (v) { return H - m.b - (v - ymin) / (ymax - ymin) * (H - m.t - m.b); };
      var svg = ["<svg viewBox='0 0 " + W + " " + H + "' xmlns='http://www.w3.org/2000/svg' role='img'>"];
      var yt = niceTicks(ymin, ymax, 5), xt = opts.xticks || niceTicks(xmin, xmax, 8);
      svg.push("<g class='axis'>");
      yt.forEach(function (v) { if (v >= ymin && v <= ymax) svg.push("<line class='gridl' x1='" + m.l + "' x2='" + (W - m.r) + "' y1='" + Y(v) + "' y2='" + Y(v) + "'/><text x='" + (m.l - 6) + "' y='" + (Y(v) + 4) + "' text-anchor='end'>" + fmtTick(v) + "</text>"); });
      xt.forEach(function (v) { if (v >= xmin && v <= xmax) svg.push("<line x1='" + X(v) + "' x2='" + X(v) + "' y1='" + (H - m.b) + "' y2='" + (H - m.b + 4) + "'/><text x='" + X(v) + "' y='" + (H - m.b + 16) + "' text-anchor='middle'>" + fmtTick(v) + "</text>"); });
      svg.push("<line x1='" + m.l + "' x2='" + (W - m.r) + "' y1='" + (H - m.b) + "' y2='" + (H - m.b) + "'/>");
      svg.push("<line x1='" + m.l + "' x2='" + m.l + "' y1='" + m.t + "' y2='" + (H - m.b) + "'/>");
      svg.push("<text x='" + ((W + m.l) / 2) + "' y='" + (H - 6) + "' text-anchor='middle'>" + esc(opts.xlabel || "") + "</text>");
      svg.push("<text transform='rotate(-90)' x='" + (-(H - m.b + m.t) / 2) + "' y='13' text-anchor='middle'>" + esc(opts.ylabel || "") + "</text>");
      svg.push("</g>");
      (opts.extra || []).forEach(function (e) { svg.push(e(X, Y)); });
      vis.forEach(function (s) {
        if (s.lo && s.hi) {          // band, split where values are missing
          var seg = [];
          var flush = function () {
            if (seg.length) {
              var up = seg.map(function (i) { return X(xs[i]) + "," + Y(s.hi[i]); });
              var down = seg.slice().reverse().map(function (i) { return X(xs[i]) + "," + Y(s.lo[i]); });
              svg.push("<polygon class='band' data-series='" + esc(s.name) + "' points='" + up.concat(down).join(" ") + "' fill='" + s.color + "' fill-opacity='0.16' stroke='none'/>");
            }
            seg = [];
          };
          for (var i = 0; i < xs.length; i++) {
            if (s.lo[i] === null || s.hi[i] === null || !isFinite(s.lo[i]) || !isFinite(s.hi[i])) flush(); else seg.push(i);
          }
          flush();
        }
        var d = "", pen = false;
        for (var j = 0; j < xs.length; j++) {
          var v = s.y[j];
          if (v === null || v === undefined || !isFinite(v)) { pen = false; continue; }
          d += (pen ? "L" : "M") + X(xs[j]).toFixed(1) + "," + Y(v).toFixed(1);
          pen = true;
        }
        svg.push("<path class='line' data-series='" + esc(s.name) + "' d='" + d + "' fill='none' stroke='" + s.color + "' stroke-width='" + (s.width || 2) + "'" + (s.dash ? " stroke-dasharray='" + s.dash + "'" : "") + "/>");
        if (xs.length <= 60 && !s.nodots) {
          for (var k = 0; k < xs.length; k++) if (s.y[k] !== null && isFinite(s.y[k])) svg.push("<circle cx='" + X(xs[k]).toFixed(1) + "' cy='" + Y(s.y[k]).toFixed(1) + "' r='2.2' fill='" + s.color + "'/>");
        }
      });
      svg.push("<line class='cursor' x1='0' x2='0' y1='" + m.t + "' y2='" + (H - m.b) + "' stroke='#888' stroke-dasharray='3,3' visibility='hidden'/>");
      svg.push("<rect class='hit' x='" + m.l + "' y='" + m.t + "' width='" + (W - m.l - m.r) + "' height='" + (H - m.t - m.b) + "' fill='transparent'/>");
      svg.push("</svg>");
      holder.innerHTML = svg.join("");
      var svgEl = holder.firstChild, cursor = $(".cursor", svgEl), hit = $(".hit", svgEl);
      hit.addEventListener("mousemove", function (ev) {
        var r = svgEl.getBoundingClientRect(), px = (ev.clientX - r.left) / r.width * W;
        var best = 0, bd = Infinity;
        xs.forEach(function (x, i) { var dd = Math.abs(X(x) - px); if (dd < bd) { bd = dd; best = i; } });
        cursor.setAttribute("x1", X(xs[best])); cursor.setAttribute("x2", X(xs[best])); cursor.setAttribute("visibility", "visible");
        var rows = ["<b>" + esc(opts.xfmt ? opts.xfmt(xs[best]) : num(xs[best])) + "</b>"];
        vis.forEach(function (s) {
          var line = "<span style='color:" + s.color + "'>■</span> " + esc(s.name) + ": " + num(s.y[best]);
          if (s.lo && s.hi && s.lo[best] !== null && s.hi[best] !== null) line += " [" + num(s.lo[best]) + ", " + num(s.hi[best]) + "]";
          rows.push(line);
        });
        tip.innerHTML = rows.join("<br>");
        tip.style.display = "block";
        var bx = box.getBoundingClientRect();
        var left = ev.clientX - bx.left + 14;
        if (left + tip.offsetWidth > bx.width) left = ev.clientX - bx.left - tip.offsetWidth - 14;
        tip.style.left = left + "px"; tip.style.top = (ev.clientY - bx.top + 10) + "px";
      });
      hit.addEventListener("mouseleave", function () { tip.style.display = "none"; cursor.setAttribute("visibility", "hidden"); });
    }
    draw();
    return box;
  }

  // ------------------------------------------------------------------ page frame
  var VIEWS = [], RENDER = {};       // set by boot() from PAGES[DATA.kind]
  function frame() {
    document.title = DATA.title || "RecWorld";
    var head = el("header");
    var badge = DATA.status ? " <span class='badge " + esc(DATA.status) + "' id='status-badge'>" + esc(DATA.status) + "</span>" : "";
    head.appendChild(el("h1", null, esc(DATA.title || "RecWorld") + badge));
    var sub = [];
    if (DATA.folder) sub.push("folder " + esc(DATA.folder));
    var pv = DATA.provenance || {};
    if (pv.recworld) sub.push("RecWorld " + esc(pv.recworld) + (pv.git_commit ? " (" + esc(String(pv.git_commit).slice(0, 10)) + ")" : ""));
    if (DATA.served) sub.push("served by recworld view: every user loads on demand");
    head.appendChild(el("div", { "class": "sub" }, sub.join(" · ")));
    var nav = el("nav");
    VIEWS.forEach(function (v) { nav.appendChild(el("a", { href: "#" + v[0], id: "tab-" + v[0] }, v[1])); });
    head.appendChild(nav);
    document.body.appendChild(head);
    var main = el("main");
    VIEWS.forEach(function (v) { main.appendChild(el("section", { "class": "view", id: "view-" + v[0] })); });
    document.body.appendChild(main);
  }
  var drawn = {};
  function show(name, arg) {
    VIEWS.forEach(function (v) {
      $("#view-" + v[0]).classList.toggle("active", v[0] === name);
      $("#tab-" + v[0]).classList.toggle("active", v[0] === name);
    });
    if (!drawn[name]) { drawn[name] = true; RENDER[name]($("#view-" + name)); }
    if (name === "users" && arg !== undefined) selectUser(arg);
  }
  function route() {
    var h = decodeURIComponent(location.hash.replace(/^#/, ""));
    var m = /^user=(-?\d+)$/.exec(h);
    if (m && RENDER.users === renderUsers) return show("users", parseInt(m[1], 10));
    var name = VIEWS.some(function (v) { return v[0] === h; }) ? h : "overview";
    show(name);
  }

  // ------------------------------------------------------------------ overview
  var KEY_METRICS = ["users", "active_users", "sessions", "slates_shown", "impressions", "ctr", "slate_ctr", "watches",
    "mean_rating", "searches", "catalog_coverage", "watched_coverage", "exposure_gini", "genre_entropy_per_user",
    "chats", "heard_of", "posts", "reposts", "post_reads", "post_reach_mean", "post_reach_max", "regret_per_slate",
    "regret_total", "simulated_days", "wall_seconds"];
  function kvTable(obj, keys) {
    var rows = (keys || Object.keys(obj)).filter(function (k) { return obj[k] !== undefined && obj[k] !== null && typeof obj[k] !== "object"; })
      .map(function (k) { return "<tr><td>" + esc(k) + "</td><td>" + (typeof obj[k] === "number" ? num(obj[k]) : esc(obj[k])) + "</td></tr>"; });
    return "<table class='kv'>" + rows.join("") + "</table>";
  }
  function renderOverview(root) {
    var m = DATA.metrics || {}, labels = DATA.labels || {}, llm = DATA.llm || {};
    var html = ["<div class='banner " + esc(DATA.status) + "' id='status-line'><b>Status: " + esc(DATA.status) + "</b> — " + esc(DATA.status_text)];
    if (llm.requests !== undefined || llm.calls !== undefined) {
      html.push(". LLM requests: " + num(llm.requests !== undefined ? llm.requests : llm.calls) + ", network calls: " + num(llm.calls || 0) +
        ", fallbacks: <b id='fallbacks'>" + num(llm.fallbacks || 0) + "</b>");
      if (llm.brain_decisions) html.push("; brain decisions: " + num(llm.brain_decisions) + ", of which fell back: " + num(llm.brain_fallbacks || 0));
    }
    html.push(".");
    if (DATA.error) html.push("<br><span class='mono'>" + esc(DATA.error) + "</span>");
    html.push("</div>");
    if (DATA.description) html.push("<p class='muted'>" + esc(DATA.description) + (DATA.overrides && DATA.overrides.length ? " <b>(this run overrides " + DATA.overrides.map(esc).join(", ") + ", so parts of the description may not apply)</b>" : "") + "</p>");
    html.push("<div class='cards' id='metric-cards'>");
    KEY_METRICS.forEach(function (k) {
      if (m[k] === undefined || m[k] === null) return;
      html.push("<div class='card' data-metric='" + esc(k) + "'><div class='v'>" + num(m[k]) + "</div><div class='k'>" + esc(labels[k] || k.replace(/_/g, " ")) + "</div></div>");
    });
    html.push("</div>");
    html.push("<div class='grid2'><div>");
    if (Object.keys(llm).length) {
      html.push("<div class='panel'><h3>LLM</h3>");
      var reasons = llm.fallback_reasons || {};
      var rk = Object.keys(reasons).sort(function (a, b) { return reasons[b] - reasons[a]; });
      html.push(kvTable(llm, ["model", "requests", "calls", "cache_hits", "fallbacks", "fallback_rate", "fallback_rate_max", "brain_decisions", "brain_fallbacks", "prompt_tokens", "completion_tokens", "cost_usd", "circuit_open", "cache_write_errors"]));
      html.push("<h3>Fallback reasons</h3>" + (rk.length ? "<table id='fallback-reasons'>" + rk.map(function (k) { return "<tr><td>" + esc(k) + "</td><td class='num'>" + num(reasons[k]) + "</td></tr>"; }).join("") + "</table>" : "<div class='empty'>none</div>"));
      html.push("</div>");
    }
    if (DATA.resumed) html.push("<div class='panel'><h3>Resumed</h3>" + kvTable(DATA.resumed) + "</div>");
    var top = DATA.top_items || [];
    html.push("<div class='panel'><h3>Most shown items</h3>");
    html.push(top.length ? "<table><tr><th>item</th><th class='num'>shown</th><th class='num'>watched</th></tr>" + top.map(function (r) { return "<tr><td>" + item(r[0]) + "</td><td class='num'>" + num(r[1]) + "</td><td class='num'>" + num(r[2]) + "</td></tr>"; }).join("") + "</table>" : "<div class='empty'>nothing was shown</div>");
    html.push("</div></div><div>");
    var pv = DATA.provenance || {};
    html.push("<div class='panel' id='provenance'><h3>Provenance</h3>" + kvTable(pv, ["recworld", "git_commit", "python", "platform", "scenario_sha256"]));
    if (pv.packages) html.push("<details><summary class='small'>package versions</summary>" + kvTable(pv.packages) + "</details>");
    html.push("</div>");
    var emb = DATA.embedded;
    if (emb) html.push("<div class='panel small' id='embedded-note'>This file embeds the timelines of <b>" + num(emb.users) + "</b> of " + num(emb.of) +
      " users (a seeded random sample; at most " + num(emb.max_users) + " users and " + num(emb.max_bytes / 1e6, 1) + " MB). " +
      "To explore every user, run <span class='mono'>recworld view " + esc(DATA.folder || "RUN") + "</span>; to embed more, <span class='mono'>recworld view RUN --write --users N</span>.</div>");
    html.push("</div></div>");
    root.innerHTML = html.join("");
  }

  // ------------------------------------------------------------------ time series
  function renderSeries(root) {
    var ts = DATA.timeseries || {};
    if (!ts.start_minute) { root.innerHTML = "<div class='empty'>no time series in this run</div>"; return; }
    var days = (DATA.end_time || 0) > 2 * 1440;
    var scale = days ? 1440 : 60, unit = days ? "simulated days" : "simulated hours";
    var x = ts.start_minute.map(function (v) { return v / scale; });
    var c = ts.cols, per = ts.bin_minutes >= 1440 ? "per " + num(ts.bin_minutes / 1440) + " d" : "per " + num(ts.bin_minutes / 60) + " h";
    var xfmt = function (v) { return clock(v * scale) + " (bin start)"; };
    var grid = el("div", { "class": "grid2" });
    root.appendChild(grid);
    var col1 = el("div"), col2 = el("div");
    grid.appendChild(col1); grid.appendChild(col2);
    lineChart(col1, { id: "chart-ctr", title: "CTR over time (band: 95% interval from each bin's counts)", x: x, xlabel: unit, ylabel: "watches / items shown", xfmt: xfmt,
      series: [{ name: "CTR", y: c.ctr, lo: c.ctr_low, hi: c.ctr_high }] });
    lineChart(col2, { id: "chart-activity", title: "Activity " + per, x: x, xlabel: unit, ylabel: "count " + per, xfmt: xfmt,
      series: ["sessions", "slates", "watches", "chats", "posts"].filter(function (k) { return c[k]; }).map(function (k) { return { name: k, y: c[k] }; }) });
    lineChart(col2, { id: "chart-diversity", title: "Genre entropy of what users watched (mean over users, bits)", x: x, xlabel: unit, ylabel: "bits", xfmt: xfmt,
      series: [{ name: "in each period", y: c.genre_entropy, color: "#1f8a4c" }, { name: "everything so far", y: c.genre_entropy_cumulative, color: "#0b5b2e", width: 3 }] });
    if (c.mean_rating) lineChart(col1, { id: "chart-rating", title: "Mean rating", x: x, xlabel: unit, ylabel: "rating (1-5)", xfmt: xfmt, ymin0: false,
      series: [{ name: "mean rating", y: c.mean_rating, color: "#c98a00" }] });
    if (c.regret_cumulative && c.regret_cumulative.some(function (v) { return v !== null; }))
      lineChart(col2, { id: "chart-regret", title: "Cumulative regret (oracle slate − shown slate click probability)", x: x, xlabel: unit, ylabel: "regret", xfmt: xfmt,
        series: [{ name: "cumulative regret", y: c.regret_cumulative, color: "#c53030" }] });
    var lz = DATA.lorenz;
    if (lz) lineChart(col1, { id: "chart-lorenz", title: "Exposure concentration (Lorenz) · Gini " + num(lz.gini, 3) + " over " + num(lz.items) + " items", x: lz.x,
      xlabel: "share of items (least shown first)", ylabel: "share of impressions", ymax: 1, height: 300,
      xfmt: function (v) { return num(v * 100, 1) + "% of items"; },
      series: [{ name: "exposure", y: lz.y, nodots: true }, { name: "equal exposure", y: lz.x, dash: "5,4", color: "#555", width: 1, nodots: true }] });
  }

  // ------------------------------------------------------------------ users
  var USERS = DATA.users || { cols: [], rows: [] };
  var UCOL = {};
  USERS.cols.forEach(function (c, i) { UCOL[c] = i; });
  var DETAILS = DATA.details || {};
  var current = null, sortKey = "user_id", sortDir = 1;
  function renderUsers(root) {
    root.innerHTML = "<div class='users'><div><div class='toolbar'><input type='search' id='user-filter' placeholder='user id…' size='10'>" +
      "<label class='small'><input type='checkbox' id='only-embedded'" + (DATA.served ? "" : " checked") + "> only users in this file</label>" +
      "<span class='small muted' id='user-count'></span></div><div class='ulist'><table id='user-table'><thead></thead><tbody></tbody></table></div></div>" +
      "<div id='user-detail'><div class='empty'>Pick a user on the left (or follow a link to one).</div></div></div>";
    var heads = [["user_id", "user"], ["sessions", "sess."], ["slates", "slates"], ["watches", "watch"], ["mean_rating", "rating"], ["chats", "chats"], ["posts", "posts"]];
    if (USERS.rows.some(function (r) { return r[UCOL.llm_calls] > 0; })) heads.push(["llm_calls", "LLM"]);
    $("#user-table thead").innerHTML = "<tr>" + heads.map(function (h) { return "<th class='sort" + (h[0] === "user_id" ? "" : " num") + "' data-key='" + h[0] + "'>" + h[1] + "</th>"; }).join("") + "</tr>";
    $all("#user-table th").forEach(function (th) {
      th.addEventListener("click", function () {
        var k = th.getAttribute("data-key");
        sortDir = sortKey === k ? -sortDir : (k === "user_id" ? 1 : -1); sortKey = k; fillUsers(heads);
      });
    });
    $("#user-filter").addEventListener("input", function () { fillUsers(heads); });
    $("#only-embedded").addEventListener("change", function () { fillUsers(heads); });
    fillUsers(heads);
  }
  function available(uid) { return DATA.served || DETAILS[uid] !== undefined; }
  function fillUsers(heads) {
    var q = $("#user-filter").value.trim(), only = $("#only-embedded").checked;
    var rows = USERS.rows.filter(function (r) {
      var uid = r[UCOL.user_id];
      return (!q || String(uid).indexOf(q) === 0) && (!only || available(uid));
    });
    var i = UCOL[sortKey];
    rows.sort(function (a, b) { var x = a[i] === null ? -Infinity : a[i], y = b[i] === null ? -Infinity : b[i]; return (x < y ? -1 : x > y ? 1 : a[0] - b[0]) * sortDir; });
    var shown = rows.slice(0, 3000);
    $("#user-table tbody").innerHTML = shown.map(function (r) {
      var uid = r[UCOL.user_id];
      return "<tr data-user='" + uid + "' class='" + (available(uid) ? "" : "absent") + (uid === current ? " sel" : "") + "'" + (available(uid) ? "" : " title='not embedded in this file: open the run with recworld view'") + ">" +
        heads.map(function (h) { var v = r[UCOL[h[0]]]; return "<td" + (h[0] === "user_id" ? "" : " class='num'") + ">" + (h[0] === "mean_rating" ? num(v, 2) : num(v)) + "</td>"; }).join("") + "</tr>";
    }).join("");
    $("#user-count").textContent = rows.length + " of " + USERS.rows.length + " users";
    $all("#user-table tbody tr").forEach(function (tr) {
      tr.addEventListener("click", function () { location.hash = "user=" + tr.getAttribute("data-user"); });
    });
  }
  function selectUser(uid) {
    current = uid;
    $all("#user-table tbody tr").forEach(function (tr) { tr.classList.toggle("sel", parseInt(tr.getAttribute("data-user"), 10) === uid); });
    var box = $("#user-detail");
    if (DETAILS[uid]) { drawUser(box, DETAILS[uid]); return; }
    if (DATA.served) {
      box.innerHTML = "<div class='empty'>loading user " + esc(uid) + "…</div>";
      fetch("user/" + uid + ".json").then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
        .then(function (d) { DETAILS[uid] = d; if (current === uid) drawUser(box, d); })
        .catch(function (e) { box.innerHTML = "<div class='empty'>could not load user " + esc(uid) + ": " + esc(e.message) + "</div>"; });
      return;
    }
    var row = USERS.rows.filter(function (r) { return r[UCOL.user_id] === uid; })[0];
    var known = row !== undefined;
    if (known && USERS.cols.every(function (c, i) { return c === "user_id" || c === "mean_rating" || !row[i]; })) {
      box.innerHTML = "<div class='panel' id='user-idle'>User " + esc(uid) + " did nothing in this run: no session, chat, post or LLM call.</div>";
      return;
    }
    box.innerHTML = "<div class='panel' id='user-absent'>" + (known ? "User " + esc(uid) + "'s timeline is not embedded in this file (it embeds a sample of " + num((DATA.embedded || {}).users) + " users). "
      : "There is no user " + esc(uid) + " in this run. ") + "Run <span class='mono'>recworld view " + esc(DATA.folder || "RUN") + "</span> to load any user on demand.</div>";
  }
  function llmBlock(calls, label) {
    if (!calls || !calls.length) return "";
    return calls.map(function (c) {
      var head = (label || "LLM " + esc(c.p || "call")) + (c.u !== undefined && c.u !== null && label === "turn" ? " by user " + esc(c.u) : "");
      var meta = [c.model, c.tok !== null && c.tok !== undefined ? c.tok + " tokens" : null, c.cache ? "cache hit" : null, c.lat !== null && c.lat !== undefined ? num(c.lat, 2) + " s" : null].filter(Boolean).map(esc).join(" · ");
      var msgs = (c.m || []).map(function (mm) {
        var txt = mm[1] === null ? "<span class='muted'>(this user's persona: see the top of the timeline)</span>" : esc(mm[1]);
        return "<div class='msg " + esc(mm[0]) + "'><span class='role'>" + esc(mm[0]) + "</span>\n" + txt + "</div>";
      }).join("");
      var ans = "<div class='msg assistant llm-answer'><span class='role'>answer</span>\n" + (c.a === null || c.a === undefined ? "<span class='muted'>(no answer kept)</span>" : esc(c.a)) + "</div>";
      var fb = c.fb ? " <span class='fb'>fell back" + (c.why ? ": " + esc(c.why) : "") + "</span>" : "";
      return "<details class='llm' data-purpose='" + esc(c.p) + "'><summary>" + head + " — prompt and answer" + fb + " <span class='muted small'>" + meta + "</span></summary>" + msgs + ans + "</details>";
    }).join("");
  }
  var STORES = { long_term: "long-term memory", short_term: "short-term memory", not_perceived: "not yet perceived by the brain",
    forgotten: "forgotten by the brain", recent: "the world's recent memory" };
  function memMeta(e) {
    if (e.st === undefined || e.st === null) return "";
    return " <span class='muted small mem-meta' data-store='" + esc(e.st) + "'>(" + (e.imp !== null && e.imp !== undefined ? "importance " + num(e.imp, 2) + " · " : "") +
      esc(STORES[e.st] || e.st) + ")</span>";
  }
  function entryHtml(e) {
    var t = "<span class='et'>" + clock(e.t) + "</span>";
    var h = "";
    switch (e.k) {
      case "slate":
        var watched = {};
        (e.w || []).forEach(function (w) { watched[w.i] = w; });
        h = t + "<span class='kind slate'>slate</span>page " + (e.pg !== null ? e.pg + 1 : "?") + (e.q ? " of the search <b>‘" + esc(e.q) + "’</b>" : "") +
          " <span class='muted small'>(slate " + esc(e.id) + ", " + (e.it || []).length + " items, " + (e.w || []).length + " watched)</span>";
        h += "<ol class='slate'>" + (e.it || []).map(function (i) {
          var w = watched[i];
          if (!w) return "<li>" + item(i) + "</li>";
          return "<li class='watched' data-item='" + esc(i) + "'>" + item(i) + " — watched " + num(w.min, 0) + " min" + (w.r !== null ? ", rated " + stars(w.r) : "") + (w.f ? " <span class='feel'>“" + esc(w.f) + "”</span>" : "") + "</li>";
        }).join("") + "</ol>";
        h += llmBlock(e.llm, "LLM page decision");
        break;
      case "watch":
        h = t + "<span class='kind'>watch</span>" + item(e.i) + " — " + num(e.min, 0) + " min" + (e.r !== null ? ", rated " + stars(e.r) : "") + (e.f ? " <span class='feel'>“" + esc(e.f) + "”</span>" : "");
        break;
      case "search":
        h = t + "<span class='kind search'>search</span><b class='query'>‘" + esc(e.q) + "’</b>";
        break;
      case "leave":
        h = t + "<span class='kind'>leave</span>" + esc(e.why || "");
        break;
      case "chat":
        var lines = String(e.text || "").split("\n").filter(function (s) { return s.length; }).map(function (s) {
          var mm = /^(-?\d+):\s?([\s\S]*)$/.exec(s);
          return mm ? "<p><b>" + esc(mm[1]) + ":</b> " + esc(mm[2]) + "</p>" : "<p>" + esc(s) + "</p>";
        }).join("");
        h = t + "<span class='kind chat'>chat</span>with " + ulink(e.with) + (e.init ? " (started by this user)" : " (started by " + ulink(e.with) + ")") +
          "<div class='dialogue'>" + (lines || "<p class='muted'>(no dialogue text)</p>") + "</div>" +
          ((e.it || []).length ? "<div class='small'>items mentioned: " + e.it.map(item).join(", ") + "</div>" : "") + llmBlock(e.llm, "turn");
        break;
      case "heard":
        h = t + "<span class='kind heard'>heard of</span>" + item(e.i) + " from " + ulink(e.from) + " (" + esc(e.via) + ")" +
          (e.watched !== null && e.watched !== undefined ? " → <b class='led'>watched it " + clock(e.watched) + "</b>" : " <span class='muted'>→ not watched in the run</span>");
        break;
      case "post":
        h = t + "<span class='kind post'>" + (e.hop ? "re-post" : "post") + "</span>" + (e.hop ? "re-posted " + ulink(e.of) + "'s post (hop " + esc(e.hop) + ") " : "") + "about " + item(e.i) +
          ": <q>" + esc(e.text) + "</q> <span class='muted small'>(post " + esc(e.pid) + ", read by " + num(e.reads) + ")</span>" + llmBlock(e.llm, "LLM post");
        break;
      case "read":
        h = t + "<span class='kind read'>read post</span>" + ulink(e.by) + "'s post about " + item(e.i) + " <span class='muted small'>(post " + esc(e.pid) + ", cascade " + esc(e.root) + ")</span>" + llmBlock(e.llm, "LLM reaction");
        break;
      case "reflect":
        h = t + "<span class='kind reflect'>reflection</span>" + (e.insight ? "<q class='insight'>" + esc(e.insight) + "</q>" : "<span class='muted'>(no insight: the answer fell back)</span>") +
          memMeta(e) + llmBlock(e.llm, "LLM reflection");
        break;
      case "memory":
        h = t + "<span class='kind memory'>memory</span><span class='mem-text" + (e.st === "forgotten" ? " forgotten" : "") + "'>" + esc(e.text) + "</span>" + memMeta(e);
        break;
      default:
        h = t + "<span class='kind'>" + esc(e.p || e.k) + "</span>" + llmBlock(e.llm, "LLM " + esc(e.p || "call"));
    }
    return "<div class='entry entry-" + esc(e.k) + "'" + (e.id !== undefined && e.k === "slate" ? " data-slate='" + esc(e.id) + "'" : "") + ">" + h + "</div>";
  }
  function drawUser(box, d) {
    addItems(d.items);
    var c = d.counts || {};
    var html = ["<div class='panel' id='user-head' data-user='" + esc(d.id) + "'><h2 style='margin-top:0'>User " + esc(d.id) + "</h2>"];
    var facts = [["sessions", c.session_start], ["slates", c.slate], ["watches", c.watch], ["ratings", c.rate], ["searches", c.search], ["chats started", c.chat], ["posts", c.post], ["posts read", c.read_post], ["heard of", c.heard]];
    html.push("<div class='small' id='user-counts'>" + facts.map(function (f) { return "<span data-count='" + esc(f[0]) + "'>" + esc(f[0]) + ": <b>" + num(f[1] || 0) + "</b></span>"; }).join(" · ") + "</div>");
    var mem = d.memory || {};
    if (mem.kept) {
      var bs = mem.by_store || {};
      html.push("<div class='small' id='user-memory' data-memories='" + esc(mem.n) + "'>memories at the end of the run: <b>" + num(mem.n) + "</b>" +
        (mem.reflections ? " (" + num(mem.reflections) + " reflection" + (mem.reflections > 1 ? "s" : "") + ")" : "") +
        (mem.n ? " — " + Object.keys(bs).map(function (k) { return esc(STORES[k] || k) + ": " + num(bs[k]); }).join(", ") : "") + "</div>");
    } else if (mem.file) {
      html.push("<div class='small muted' id='user-memory'>memories.parquet keeps a sample of users' memories; not this user's</div>");
    }
    var prof = d.profile || {};
    if (Object.keys(prof).length) html.push("<details><summary class='small'>profile</summary>" + kvTable(prof) + "</details>");
    if (d.persona) html.push("<details class='llm'><summary>persona (system prompt of every LLM call)</summary><div class='msg system'>" + esc(d.persona) + "</div></details>");
    html.push("<div class='toolbar small' style='margin-top:6px'>show: " + ["slate", "search", "chat", "post", "read", "heard", "reflect", "memory", "llm", "leave"].map(function (k) {
      return "<label><input type='checkbox' class='kindf' value='" + k + "' checked> " + k + "</label>";
    }).join(" ") + " · <a href='#' id='expand-llm'>open every prompt</a></div></div>");
    (d.blocks || []).forEach(function (b) {
      if (b.s !== null && b.s !== undefined) {
        html.push("<div class='block session' data-session='" + esc(b.s) + "'><div class='bh'>Session " + esc(b.s) + " <span class='muted small'>" + clock(b.t0) + (b.t1 !== null && b.t1 !== undefined ? " – " + clock(b.t1) : " (still going at the end)") +
          "</span> <span class='kind'>" + esc(b.act) + "</span></div><div class='bb'>" + (b.llm ? llmBlock(b.llm, "LLM activity choice") : "") +
          (b.e.length ? b.e.map(entryHtml).join("") : "<div class='empty'>nothing else happened</div>") + "</div></div>");
      } else {
        html.push("<div class='block loose'><div class='bb'>" + b.e.map(entryHtml).join("") + "</div></div>");
      }
    });
    if (!(d.blocks || []).length) html.push("<div class='empty'>This user did nothing in the run.</div>");
    box.innerHTML = html.join("");
    $all(".kindf", box).forEach(function (cb) {
      cb.addEventListener("change", function () {
        $all(".entry-" + cb.value, box).forEach(function (x) { x.style.display = cb.checked ? "" : "none"; });
      });
    });
    $("#expand-llm", box).addEventListener("click", function (ev) { ev.preventDefault(); $all("details.llm", box).forEach(function (x) { x.open = true; }); });
  }

  // ------------------------------------------------------------------ social
  function renderSocial(root) {
    var s = DATA.social || {}, net = s.chat_network || {}, html = [];
    html.push("<div class='grid2'><div class='panel net' id='chat-network'><h3>Chat network</h3>");
    if ((net.nodes || []).length) {
      var xs = net.nodes.map(function (n) { return n[1]; }), ys = net.nodes.map(function (n) { return n[2]; });
      var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs), y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
      var W = 600, H = 460, pad = 24;
      var X = function (v) { return pad + (x1 > x0 ? (v - x0) / (x1 - x0) : 0.5) * (W - 2 * pad); };
      var Y = function (v) { return pad + (y1 > y0 ? (v - y0) / (y1 - y0) : 0.5) * (H - 2 * pad); };
      var pos = {};
      net.nodes.forEach(function (n) { pos[n[0]] = [X(n[1]), Y(n[2])]; });
      var maxN = Math.max.apply(null, net.edges.map(function (e) { return e[2]; }).concat([1]));
      var svg = ["<svg viewBox='0 0 " + W + " " + H + "' xmlns='http://www.w3.org/2000/svg'>"];
      net.edges.forEach(function (e) {
        var a = pos[e[0]], b = pos[e[1]];
        svg.push("<line x1='" + a[0].toFixed(1) + "' y1='" + a[1].toFixed(1) + "' x2='" + b[0].toFixed(1) + "' y2='" + b[1].toFixed(1) + "' stroke='#9f7aea' stroke-opacity='0.55' stroke-width='" + (1 + 3 * e[2] / maxN).toFixed(1) + "'><title>users " + e[0] + " and " + e[1] + ": " + e[2] + " chat(s)</title></line>");
      });
      net.nodes.forEach(function (n) {
        var p = pos[n[0]], r = 3 + 2.2 * Math.sqrt(n[3]);
        svg.push("<circle data-user='" + n[0] + "' cx='" + p[0].toFixed(1) + "' cy='" + p[1].toFixed(1) + "' r='" + r.toFixed(1) + "' fill='" + (available(n[0]) ? "#6b46c1" : "#b9a8e0") + "' stroke='#fff'><title>user " + n[0] + ": " + n[3] + " chat(s)" + (available(n[0]) ? " — click to open" : "") + "</title></circle>");
        if (net.nodes.length <= 80) svg.push("<text x='" + (p[0] + r + 2).toFixed(1) + "' y='" + (p[1] + 3).toFixed(1) + "' font-size='9' fill='#5b6575' pointer-events='none'>" + n[0] + "</text>");
      });
      svg.push("</svg>");
      html.push(svg.join(""));
      html.push("<div class='small muted'>" + num(net.chats) + " chats between " + num(net.total_nodes) + " users (" + num(net.total_edges) + " pairs)" +
        (net.total_nodes > net.nodes.length ? "; the " + net.nodes.length + " users who chatted most are drawn" : "") + ". A line's width is the number of chats; click a user to open their timeline.</div>");
    } else html.push("<div class='empty'>no chats in this run</div>");
    html.push("</div><div class='panel' id='heard'><h3>Heard of → watched?</h3>");
    var hd = s.heard || {};
    if ((hd.by_channel || []).length) {
      html.push("<table id='heard-summary'><tr><th>heard through</th><th class='num'>heard of</th><th class='num'>then watched</th><th class='num'>share</th><th class='num'>median delay</th></tr>" +
        hd.by_channel.map(function (r) { return "<tr data-via='" + esc(r.via) + "'><td>" + esc(r.via) + "</td><td class='num'>" + num(r.heard) + "</td><td class='num'>" + num(r.watched) + "</td><td class='num'>" + num((r.rate || 0) * 100, 1) + "%</td><td class='num'>" + (r.median_delay_hours !== null ? num(r.median_delay_hours, 1) + " h" : "–") + "</td></tr>"; }).join("") + "</table>");
      html.push("<p class='small muted'>An item counts as watched when the user who heard of it watched it later in the run (from any slate).</p>");
      html.push("<details><summary class='small'>every item heard of" + (hd.total > hd.rows.length ? " (" + hd.rows.length + " of " + num(hd.total) + ", those watched first)" : "") + "</summary><div style='max-height:360px;overflow:auto'><table><tr><th>when</th><th>who</th><th>item</th><th>from</th><th>via</th><th>watched</th></tr>" +
        hd.rows.map(function (r) { return "<tr><td class='small'>" + clock(r.t) + "</td><td>" + ulink(r.user) + "</td><td>" + item(r.item) + "</td><td>" + ulink(r.from) + "</td><td>" + esc(r.via) + "</td><td>" + (r.watched !== null ? "after " + num(r.delay, 1) + " h" : "<span class='muted'>no</span>") + "</td></tr>"; }).join("") + "</table></div></details>");
    } else html.push("<div class='empty'>no user heard of an item from another in this run</div>");
    html.push("</div></div>");
    var cs = s.cascades || {};
    html.push("<div class='panel' id='cascades'><h3>Post cascades</h3>");
    if ((cs.list || []).length) {
      html.push("<p class='small muted'>Each original post and its re-posts (hop = how many re-posts away from the original); reach = distinct users who read any post of the cascade. " +
        (cs.total > cs.list.length ? "The " + cs.list.length + " cascades of widest reach of " + num(cs.total) + " are listed." : "") + "</p>");
      html.push("<table id='cascade-table'><tr><th>post</th><th>by</th><th>about</th><th>when</th><th class='num'>re-posts</th><th class='num'>max hop</th><th class='num'>reach</th></tr>");
      cs.list.forEach(function (c) {
        html.push("<tr class='cascade' data-root='" + c.root + "'><td><a href='#' class='u cas' data-root='" + c.root + "'>" + c.root + " ▸</a></td><td>" + ulink(c.user) + "</td><td>" + item(c.item) + "</td><td class='small'>" + clock(c.t) + "</td><td class='num'>" + c.reposts + "</td><td class='num'>" + c.max_hop + "</td><td class='num'>" + c.reach + "</td></tr>");
        html.push("<tr class='tree-row' data-root='" + c.root + "' style='display:none'><td colspan='7'>" + cascadeTree(c) + "</td></tr>");
      });
      html.push("</table>");
    } else html.push("<div class='empty'>no posts in this run</div>");
    html.push("</div>");
    root.innerHTML = html.join("");
    $all("#chat-network circle").forEach(function (cEl) { cEl.addEventListener("click", function () { location.hash = "user=" + cEl.getAttribute("data-user"); }); });
    $all("a.cas").forEach(function (a) {
      a.addEventListener("click", function (ev) {
        ev.preventDefault();
        var row = $("tr.tree-row[data-root='" + a.getAttribute("data-root") + "']");
        row.style.display = row.style.display === "none" ? "" : "none";
      });
    });
  }
  function cascadeTree(c) {
    var kids = {};
    c.nodes.forEach(function (n) { var p = n.parent === null || n.parent === undefined ? "root" : n.parent; (kids[p] = kids[p] || []).push(n); });
    function sub(list) {
      if (!list || !list.length) return "";
      return "<ul class='tree'>" + list.map(function (n) {
        var readers = n.readers || [];
        var shown = readers.slice(0, 40).map(function (u) { return ulink(u); }).join(", ") + (readers.length > 40 ? ", … (" + readers.length + ")" : "");
        return "<li data-post='" + n.post + "'><span class='hop'>hop " + n.hop + "</span>" + ulink(n.user) + (n.hop ? " re-posted" : " posted") + " at " + clock(n.t) + ": <q>" + esc(n.text) + "</q>" +
          "<div class='small muted'>read by " + readers.length + (readers.length ? ": " + shown : "") + (n.watched_after ? "; " + n.watched_after + " of them watched " + item(n.item) + " afterwards" : "") + "</div>" + sub(kids[n.post]) + "</li>";
      }).join("") + "</ul>";
    }
    return sub(kids.root || c.nodes.filter(function (n) { return n.hop === 0; }));
  }

  function renderScenario(root) {
    root.innerHTML = "<h2>Resolved scenario</h2><pre class='yaml' id='scenario-yaml'>" + esc(DATA.scenario_yaml || "(no scenario.yaml)") + "</pre>";
  }

  // ------------------------------------------------------------------ comparisons and sweeps
  function ci(r) {
    if (!r || r.mean === null || r.mean === undefined) return "–";
    return num(r.mean) + (r.low !== null && r.low !== undefined ? " <span class='ci'>[" + num(r.low) + ", " + num(r.high) + "]</span>" : "");
  }
  function renderArmsOverview(root) {
    var html = [];
    if (DATA.status && DATA.status !== "completed") html.push("<div class='banner " + esc(DATA.status) + "' id='status-line'><b>Status: " + esc(DATA.status) + "</b> — some runs did not complete; the tables summarise the runs that did.</div>");
    if (DATA.notes) html.push("<p class='muted'>" + esc(DATA.notes) + "</p>");
    html.push("<p class='small muted'>Each cell: the mean over seeds and its " + num((DATA.level || 0.95) * 100) + "% interval (Student's t over seeds; no interval with one seed).</p>");
    var cells = {};
    (DATA.summary || []).forEach(function (r) { cells[r.arm + "\u0000" + r.metric] = r; });
    html.push("<div style='overflow:auto'><table id='arms-table'><tr><th>" + esc(DATA.by || "arm") + "</th><th class='num'>seeds</th>" + DATA.metrics.map(function (m) { return "<th class='num'>" + esc((DATA.labels || {})[m] || m) + "</th>"; }).join("") + "</tr>");
    DATA.arms.forEach(function (a) {
      var n = Math.max.apply(null, DATA.metrics.map(function (m) { var c = cells[a + "\u0000" + m]; return c ? c.n : 0; }).concat([0]));
      html.push("<tr data-arm='" + esc(a) + "'><td>" + esc(a) + "</td><td class='num'>" + n + "</td>" + DATA.metrics.map(function (m) { return "<td class='num'>" + ci(cells[a + "\u0000" + m]) + "</td>"; }).join("") + "</tr>");
    });
    html.push("</table></div>");
    if ((DATA.differences || []).length) {
      html.push("<h3>Paired differences against " + esc(DATA.baseline) + "</h3><div style='overflow:auto'><table id='diff-table'><tr><th>" + esc(DATA.by || "arm") + "</th>" + DATA.metrics.map(function (m) { return "<th class='num'>" + esc(m) + "</th>"; }).join("") + "</tr>");
      var dc = {};
      DATA.differences.forEach(function (r) { dc[r.arm + "\u0000" + r.metric] = r; });
      DATA.arms.filter(function (a) { return a !== DATA.baseline; }).forEach(function (a) {
        html.push("<tr><td>" + esc(a) + "</td>" + DATA.metrics.map(function (m) { var r = dc[a + "\u0000" + m]; return "<td class='num'>" + ci(r) + (r && r.low !== null && (r.low > 0 || r.high < 0) ? " *" : "") + "</td>"; }).join("") + "</tr>");
      });
      html.push("</table></div><p class='small muted'>* the interval leaves out zero.</p>");
    }
    html.push("<h3>Metrics per " + esc(DATA.by || "arm") + "</h3><div class='cards wide' id='forest'></div>");
    root.innerHTML = html.join("");
    var forest = $("#forest");
    DATA.metrics.forEach(function (m) {
      var rows = DATA.arms.map(function (a) { return [a, cells[a + "\u0000" + m]]; }).filter(function (r) { return r[1] && r[1].mean !== null; });
      if (!rows.length) return;
      var vals = [];
      rows.forEach(function (r) { [r[1].mean, r[1].low, r[1].high].forEach(function (v) { if (v !== null && isFinite(v)) vals.push(v); }); });
      var lo = Math.min.apply(null, vals), hi = Math.max.apply(null, vals);
      if (!(hi > lo)) { hi = lo + 1; lo = lo - 1; }
      var pad = (hi - lo) * 0.08; lo -= pad; hi += pad;
      var W = 300, rowH = 22, H = 26 + rows.length * rowH, L = 96;
      var X = function (v) { return L + (v - lo) / (hi - lo) * (W - L - 10); };
      var svg = ["<svg viewBox='0 0 " + W + " " + H + "' xmlns='http://www.w3.org/2000/svg'><g class='axis'>"];
      niceTicks(lo, hi, 4).forEach(function (v) { svg.push("<line class='gridl' x1='" + X(v) + "' x2='" + X(v) + "' y1='4' y2='" + (H - 18) + "'/><text x='" + X(v) + "' y='" + (H - 5) + "' text-anchor='middle'>" + fmtTick(v) + "</text>"); });
      svg.push("</g>");
      rows.forEach(function (r, i) {
        var y = 14 + i * rowH, c = COLORS[DATA.arms.indexOf(r[0]) % COLORS.length];
        svg.push("<text x='4' y='" + (y + 4) + "' font-size='11'>" + esc(String(r[0]).slice(0, 14)) + "</text>");
        if (r[1].low !== null && r[1].low !== undefined) svg.push("<line x1='" + X(r[1].low) + "' x2='" + X(r[1].high) + "' y1='" + y + "' y2='" + y + "' stroke='" + c + "' stroke-width='2'/>");
        svg.push("<circle cx='" + X(r[1].mean) + "' cy='" + y + "' r='4' fill='" + c + "'><title>" + esc(r[0]) + ": " + num(r[1].mean) + "</title></circle>");
      });
      svg.push("</svg>");
      forest.appendChild(el("div", { "class": "card" }, "<div class='k'>" + esc((DATA.labels || {})[m] || m) + "</div>" + svg.join("")));
    });
  }
  function renderArmsCurves(root) {
    var curves = DATA.curves || [];
    if (!curves.length) { root.innerHTML = "<div class='empty'>no time series</div>"; return; }
    var grid = el("div", { "class": "grid2" });
    root.appendChild(grid);
    curves.forEach(function (cv, k) {
      var xs = {};
      DATA.arms.forEach(function (a) { ((cv.arms[a] || {}).x || []).forEach(function (v) { xs[v] = true; }); });
      var x = Object.keys(xs).map(Number).sort(function (a, b) { return a - b; });
      var series = DATA.arms.filter(function (a) { return cv.arms[a]; }).map(function (a, i) {
        var s = cv.arms[a], at = {};
        s.x.forEach(function (v, j) { at[v] = j; });
        var pick = function (arr) { return x.map(function (v) { return at[v] === undefined || !arr ? null : arr[at[v]]; }); };
        return { name: a + " (n=" + s.n + ")", y: pick(s.mean), lo: pick(s.low), hi: pick(s.high), color: COLORS[DATA.arms.indexOf(a) % COLORS.length] };
      });
      lineChart(grid, { id: "curve-" + k, title: cv.label + " (mean over seeds, band: 95% interval)", x: x.map(function (v) { return v / 60; }), xlabel: "simulated hours", ylabel: cv.label,
        xfmt: function (v) { return num(v, 1) + " h"; }, series: series });
    });
  }
  function renderArmsRuns(root) {
    var runs = DATA.runs || [];
    root.innerHTML = runs.length ? "<table id='runs-table'><tr><th>" + esc(DATA.by || "arm") + "</th><th>seed</th><th>status</th><th>run</th></tr>" + runs.map(function (r) {
      return "<tr><td>" + esc(r.arm) + "</td><td>" + esc(r.seed) + "</td><td><span class='badge " + esc(r.status) + "'>" + esc(r.status) + "</span></td><td>" +
        (r.report ? "<a href='" + esc(r.report) + "'>" + esc(r.folder || r.report) + "</a>" : esc(r.folder || "")) + "</td></tr>";
    }).join("") + "</table>" : "<div class='empty'>no runs listed</div>";
  }

  // ------------------------------------------------------------------ pages
  /* A page kind is its tabs ([id, label]) and a renderer per tab.  Other scripts inlined
     after this one (studies.js: STS and fidelity pages) add kinds to RecWorldExplorer.pages
     with the helpers exported below; the page is drawn once every script has run. */
  var PAGES = {
    run: { views: [["overview", "Overview"], ["series", "Time series"], ["users", "Users"], ["social", "Social"], ["scenario", "Scenario"]],
      render: { overview: renderOverview, series: renderSeries, users: renderUsers, social: renderSocial, scenario: renderScenario } },
    arms: { views: [["overview", "Overview"], ["curves", "Curves"], ["runs", "Runs"]],
      render: { overview: renderArmsOverview, curves: renderArmsCurves, runs: renderArmsRuns } }
  };
  window.RecWorldExplorer = { DATA: DATA, COLORS: COLORS, esc: esc, num: num, el: el, $: $, $all: $all, clock: clock, ci: ci,
    niceTicks: niceTicks, fmtTick: fmtTick, lineChart: lineChart, kvTable: kvTable, pages: PAGES };
  function boot() {
    var page = PAGES[DATA.kind] || PAGES.run;
    VIEWS = page.views; RENDER = page.render;
    frame();
    window.addEventListener("hashchange", route);
    route();
    document.body.setAttribute("data-ready", "1");
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot); else boot();
})();
