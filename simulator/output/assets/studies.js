/* RecWorld study pages: an STS study (recworld sts) and a fidelity study (recworld fidelity).
   Inlined after explorer.js, whose helpers it uses (window.RecWorldExplorer); adds the page
   kinds "sts" and "fidelity".  Every text from the study goes through esc() before it is shown. */
(function () {
  "use strict";
  var X = window.RecWorldExplorer, DATA = X.DATA, esc = X.esc, num = X.num, el = X.el, $ = X.$, $all = X.$all;
  var COLORS = X.COLORS, GREY = "#8a94a6", RED = "#c53030";

  function f3(v) { return num(v, 3); }
  function pct(v) { return v === null || v === undefined ? "–" : num(v * 100, 1) + "%"; }
  function withCi(v, c, fmt) {
    fmt = fmt || num;
    if (v === null || v === undefined) return "–";
    return fmt(v) + (c && c.length === 2 && c[0] !== null && c[1] !== null ? " <span class='ci'>[" + fmt(c[0]) + ", " + fmt(c[1]) + "]</span>" : "");
  }
  function banner() {
    if (!DATA.status || DATA.status === "completed") return "";
    return "<div class='banner " + esc(DATA.status) + "' id='status-line'><b>Status: " + esc(DATA.status_text || DATA.status) +
      "</b> — the study did not finish; what it measured before it stopped is shown.</div>";
  }

  /* Grouped bars with optional interval whiskers.
     opts: {id, title, cats: [label], series: [{name, values, lo, hi, color}], ylabel, xlabel, ymax, note} */
  function barChart(container, opts) {
    var box = el("div", { "class": "chart bars" });
    if (opts.id) box.id = opts.id;
    box.appendChild(el("div", { "class": "ttl" }, esc(opts.title || "")));
    var legend = el("div", { "class": "legend" });
    opts.series.forEach(function (s, i) {
      s.color = s.color || COLORS[i % COLORS.length];
      legend.appendChild(el("span", { "data-series": s.name }, "<i style='background:" + s.color + "'></i>" + esc(s.name)));
    });
    box.appendChild(legend);
    var W = opts.width || 640, H = opts.height || 260, m = { l: 54, r: 12, t: 10, b: 44 };
    var vals = [0];
    opts.series.forEach(function (s) {
      [s.values, s.lo, s.hi].forEach(function (a) { (a || []).forEach(function (v) { if (v !== null && v !== undefined && isFinite(v)) vals.push(v); }); });
    });
    var ymin = Math.min.apply(null, vals), ymax = opts.ymax !== undefined ? opts.ymax : Math.max.apply(null, vals);
    if (!(ymax > ymin)) ymax = ymin + 1;
    ymax += (ymax - ymin) * 0.04;
    var Y = function (v) { return H - m.b - (v - ymin) / (ymax - ymin) * (H - m.t - m.b); };
    var n = opts.cats.length, groupW = (W - m.l - m.r) / Math.max(n, 1), k = opts.series.length;
    var barW = Math.min(28, groupW * 0.8 / Math.max(k, 1));
    var svg = ["<svg viewBox='0 0 " + W + " " + H + "' xmlns='http://www.w3.org/2000/svg' role='img'><g class='axis'>"];
    X.niceTicks(ymin, ymax, 5).forEach(function (v) {
      if (v >= ymin && v <= ymax) svg.push("<line class='gridl' x1='" + m.l + "' x2='" + (W - m.r) + "' y1='" + Y(v) + "' y2='" + Y(v) + "'/><text x='" + (m.l - 6) + "' y='" + (Y(v) + 4) + "' text-anchor='end'>" + X.fmtTick(v) + "</text>");
    });
    svg.push("<line x1='" + m.l + "' x2='" + (W - m.r) + "' y1='" + Y(0) + "' y2='" + Y(0) + "'/>");
    opts.cats.forEach(function (c, i) {
      svg.push("<text x='" + (m.l + groupW * (i + 0.5)) + "' y='" + (H - m.b + 15) + "' text-anchor='middle'>" + esc(c) + "</text>");
    });
    svg.push("<text x='" + ((W + m.l) / 2) + "' y='" + (H - 6) + "' text-anchor='middle'>" + esc(opts.xlabel || "") + "</text>");
    svg.push("<text transform='rotate(-90)' x='" + (-(H - m.b + m.t) / 2) + "' y='13' text-anchor='middle'>" + esc(opts.ylabel || "") + "</text></g>");
    opts.series.forEach(function (s, j) {
      opts.cats.forEach(function (c, i) {
        var v = s.values[i];
        if (v === null || v === undefined || !isFinite(v)) return;
        var x = m.l + groupW * (i + 0.5) + (j - k / 2) * barW, y0 = Y(0), y1 = Y(v);
        var tip = s.name + " · " + c + ": " + num(v) + (s.lo && s.lo[i] !== null && s.lo[i] !== undefined ? " [" + num(s.lo[i]) + ", " + num(s.hi[i]) + "]" : "");
        svg.push("<rect class='bar' data-series='" + esc(s.name) + "' data-cat='" + esc(c) + "' data-value='" + v + "' x='" + x.toFixed(1) + "' y='" + Math.min(y0, y1).toFixed(1) +
          "' width='" + (barW * 0.92).toFixed(1) + "' height='" + Math.abs(y1 - y0).toFixed(1) + "' fill='" + s.color + "'><title>" + esc(tip) + "</title></rect>");
        if (s.lo && s.hi && s.lo[i] !== null && s.lo[i] !== undefined && s.hi[i] !== null && s.hi[i] !== undefined) {
          var cx = (x + barW * 0.46).toFixed(1);
          svg.push("<path class='whisker' d='M" + cx + "," + Y(s.lo[i]).toFixed(1) + "V" + Y(s.hi[i]).toFixed(1) + "M" + (cx - 3) + "," + Y(s.lo[i]).toFixed(1) + "h6M" + (cx - 3) + "," + Y(s.hi[i]).toFixed(1) + "h6' stroke='#222' stroke-width='1.2' fill='none'/>");
        }
      });
    });
    svg.push("</svg>");
    box.appendChild(el("div", null, svg.join("")));
    if (opts.note) box.appendChild(el("div", { "class": "small muted" }, opts.note));
    container.appendChild(box);
    return box;
  }

  /* Intervals on one axis, one row each: [{label, mean, lo, hi, color}] with a zero line. */
  function forest(rows, opts) {
    opts = opts || {};
    var vals = [0];
    rows.forEach(function (r) { [r.mean, r.lo, r.hi].forEach(function (v) { if (v !== null && v !== undefined && isFinite(v)) vals.push(v); }); });
    var lo = Math.min.apply(null, vals), hi = Math.max.apply(null, vals);
    if (!(hi > lo)) { hi = lo + 1; }
    var pad = (hi - lo) * 0.08; lo -= pad; hi += pad;
    var W = opts.width || 640, rowH = 26, L = 150, H = 30 + rows.length * rowH;
    var P = function (v) { return L + (v - lo) / (hi - lo) * (W - L - 12); };
    var svg = ["<svg viewBox='0 0 " + W + " " + H + "' xmlns='http://www.w3.org/2000/svg'><g class='axis'>"];
    X.niceTicks(lo, hi, 5).forEach(function (v) { svg.push("<line class='gridl' x1='" + P(v) + "' x2='" + P(v) + "' y1='4' y2='" + (H - 20) + "'/><text x='" + P(v) + "' y='" + (H - 6) + "' text-anchor='middle'>" + X.fmtTick(v) + "</text>"); });
    svg.push("<line x1='" + P(0) + "' x2='" + P(0) + "' y1='4' y2='" + (H - 20) + "' stroke='#555' stroke-dasharray='3,3'/></g>");
    rows.forEach(function (r, i) {
      var y = 16 + i * rowH, c = r.color || COLORS[i % COLORS.length];
      svg.push("<text x='4' y='" + (y + 4) + "' font-size='11'>" + esc(String(r.label).slice(0, 20)) + "</text>");
      if (r.lo !== null && r.lo !== undefined && r.hi !== null && r.hi !== undefined) svg.push("<line x1='" + P(r.lo) + "' x2='" + P(r.hi) + "' y1='" + y + "' y2='" + y + "' stroke='" + c + "' stroke-width='2'/>");
      if (r.mean !== null && r.mean !== undefined) svg.push("<circle class='pt' data-label='" + esc(r.label) + "' cx='" + P(r.mean) + "' cy='" + y + "' r='4' fill='" + c + "'><title>" + esc(r.label) + ": " + num(r.mean) + (r.lo !== null && r.lo !== undefined ? " [" + num(r.lo) + ", " + num(r.hi) + "]" : "") + "</title></circle>");
    });
    svg.push("</svg>");
    return svg.join("");
  }

  // ================================================================== STS
  function stsOverview(root) {
    var h = [banner()];
    h.push("<p class='muted' id='sts-settings'>Target <b>" + esc(DATA.target) + "</b>; the STS is placed " + esc(String(DATA.position || "").replace(/_/g, " ")) +
      "; LLM " + esc(DATA.model) + (DATA.llm && DATA.llm.requests !== undefined ? " (" + num(DATA.llm.requests) + " requests, " + num(DATA.llm.fallbacks || 0) + " fallbacks)" : "") +
      ". Ranks are by first mention in the answer (1 = first; absent = number of products + 1). Intervals are 95%: Wilson for shares, paired bootstrap for the mean rank gain (rank without − rank with: above 0, the STS moved the target up).</p>");
    (DATA.studies || []).forEach(function (s) {
      h.push("<div class='panel sts-study' data-catalog='" + esc(s.key) + "'><h3>" + esc(s.catalog) + ": target ‘" + esc(s.target) + "’ <span class='muted small'>(" + num(s.items) + " products)</span></h3>");
      h.push("<div class='small'>STS: <span class='mono sts-text'>" + esc(s.sts || "(none)") + "</span></div>");
      if (!s.recommenders.length) { h.push("<div class='empty'>no protocol results (the study stopped before them)</div></div>"); return; }
      h.push("<div style='overflow:auto'><table class='sts-table'><tr><th>recommender</th><th class='num'>trials</th><th class='num'>mean rank without → with</th><th class='num'>gain</th>" +
        "<th class='num'>top-1 without</th><th class='num'>top-1 with</th><th class='num'>advantage</th><th class='num'>disadvantage</th><th class='num'>LLM calls</th></tr>");
      s.recommenders.forEach(function (p) {
        h.push("<tr data-rec='" + esc(p.name) + "'><td>" + esc(p.name) + "</td><td class='num'>" + num(p.trials) + "</td><td class='num'>" + num(p.mean_rank_without, 2) + " → " + num(p.mean_rank_with, 2) +
          "</td><td class='num gain'>" + withCi(p.mean_rank_gain, p.mean_rank_gain_ci, function (v) { return num(v, 2); }) + "</td><td class='num'>" + withCi(p.top1_without, p.top1_without_ci, pct) +
          "</td><td class='num'>" + withCi(p.top1_with, p.top1_with_ci, pct) + "</td><td class='num adv'>" + withCi(p.advantage, p.advantage_ci, pct) + "</td><td class='num'>" + withCi(p.disadvantage, p.disadvantage_ci, pct) +
          "</td><td class='num'>" + num(p.llm_calls) + "</td></tr>");
      });
      h.push("</table></div><div class='grid2'><div class='card'><div class='k'>mean rank gain (95% interval)</div>" +
        forest(s.recommenders.map(function (p, i) { var c = p.mean_rank_gain_ci || [null, null]; return { label: p.name, mean: p.mean_rank_gain, lo: c[0], hi: c[1], color: COLORS[i % COLORS.length] }; })) +
        "</div><div class='card'><div class='k'>advantage and disadvantage (share of trials, 95% interval)</div>" +
        forest([].concat.apply([], s.recommenders.map(function (p, i) {
          var a = p.advantage_ci || [null, null], d = p.disadvantage_ci || [null, null];
          return [{ label: p.name + " up", mean: p.advantage, lo: a[0], hi: a[1], color: "#1f8a4c" }, { label: p.name + " down", mean: p.disadvantage, lo: d[0], hi: d[1], color: RED }];
        }))) + "</div></div></div>");
    });
    if (!(DATA.studies || []).length) h.push("<div class='empty'>no catalog finished</div>");
    root.innerHTML = h.join("");
  }
  function pairedTrials(s, p) {
    var n = s.items + 1, W = 640, H = Math.min(Math.max(260, 44 + n * 18), 520), lab = Math.ceil(n / 20), x0 = 140, x1 = 520, step = (H - 44) / Math.max(n - 1, 1);
    var Y = function (r) { return 16 + (r - 1) * step; };
    var svg = ["<svg viewBox='0 0 " + W + " " + H + "' xmlns='http://www.w3.org/2000/svg' class='paired'><g class='axis'>"];
    for (var r = 1; r <= n; r++) if (r === 1 || r === n || (r - 1) % lab === 0) svg.push("<text x='" + (x0 - 10) + "' y='" + (Y(r) + 4) + "' text-anchor='end'>" + (r === n ? "absent" : r) + "</text><line class='gridl' x1='" + x0 + "' x2='" + x1 + "' y1='" + Y(r) + "' y2='" + Y(r) + "'/>");
    svg.push("<text x='" + x0 + "' y='" + (H - 4) + "' text-anchor='middle'>without</text><text x='" + x1 + "' y='" + (H - 4) + "' text-anchor='middle'>with STS</text></g>");
    p.trials_paired.forEach(function (t, i) {
      var c = t[1] < t[0] ? "#1f8a4c" : t[1] > t[0] ? RED : GREY, jit = (i % 5 - 2) * 1.5;
      svg.push("<line class='trial' data-without='" + t[0] + "' data-with='" + t[1] + "' x1='" + x0 + "' y1='" + (Y(t[0]) + jit) + "' x2='" + x1 + "' y2='" + (Y(t[1]) + jit) + "' stroke='" + c + "' stroke-opacity='0.7' stroke-width='1.6'><title>trial " + (i + 1) + ": rank " + t[0] + " → " + t[1] + "</title></line>");
    });
    svg.push("</svg>");
    return "<div class='chart'><div class='ttl'>each trial: the target's rank in the same product order, without → with the STS</div>" + svg.join("") + "</div>";
  }
  function stsRanks(root) {
    var any = false;
    (DATA.studies || []).forEach(function (s) {
      s.recommenders.forEach(function (p) {
        any = true;
        var sec = el("div", { "class": "panel ranks", "data-catalog": s.key, "data-rec": p.name });
        sec.appendChild(el("h3", null, esc(s.catalog) + " · " + esc(p.name) + " <span class='muted small'>(" + num(p.trials) + " trials)</span>"));
        var grid = el("div", { "class": "grid2" });
        sec.appendChild(grid);
        root.appendChild(sec);
        var cats = [], dw = [], dwo = [], dist = p.rank_distribution || { "with": {}, "without": {} };
        for (var r = 1; r <= s.items + 1; r++) {
          cats.push(r === s.items + 1 ? "absent" : String(r));
          dw.push((dist["with"] || {})[String(r)] || 0); dwo.push((dist.without || {})[String(r)] || 0);
        }
        barChart(grid, { title: "the target's rank over the trials", cats: cats, xlabel: "rank of the target", ylabel: "trials",
          series: [{ name: "without STS", values: dwo, color: GREY }, { name: "with STS", values: dw, color: RED }] });
        grid.appendChild(el("div", null, pairedTrials(s, p)));
      });
    });
    if (!any) root.innerHTML = "<div class='empty'>no protocol results</div>";
  }
  function stsSearch(root) {
    var any = false;
    (DATA.studies || []).forEach(function (s) {
      var se = s.search;
      if (!se || !(se.curve || []).length) return;
      any = true;
      var sec = el("div", { "class": "panel search-trace", "data-catalog": s.key });
      if (se.objective === "logprob") { logprobSearch(sec, s, se); root.appendChild(sec); return; }
      sec.appendChild(el("h3", null, "Search on " + esc(s.catalog) + " <span class='muted small'>scored with " + esc(se.scored_with) + " over " + num(se.orders) + " product orders; " + num(se.calls) + " LLM calls</span>"));
      sec.appendChild(el("p", { "class": "small" }, "Mean rank " + num(se.no_sts_mean_rank, 2) + " without an STS, <b>" + num(se.best_mean_rank, 2) + "</b> with the best found: <span class='mono'>" + esc(se.sts) +
        "</span> <span class='muted'>(on the search's own orders; the protocol's trials use fresh ones)</span>"));
      root.appendChild(sec);
      var xs = se.curve.map(function (c) { return c.calls; });
      X.lineChart(sec, { id: "search-" + s.key, title: "the target's mean rank as the search spends LLM calls (lower is better)", x: xs, xlabel: "LLM calls spent", ylabel: "mean rank", ymin0: false,
        series: [{ name: "best so far", y: se.curve.map(function (c) { return c.best_mean_rank; }), color: RED, width: 3 },
          { name: "candidate", y: se.curve.map(function (c) { return c.candidate_mean_rank; }), color: GREY, width: 1, dash: "2,3" },
          { name: "no STS", y: xs.map(function () { return se.no_sts_mean_rank; }), color: "#222", dash: "6,4", width: 1, nodots: true }] });
      var rows = se.curve.map(function (c, i) { return "<tr><td class='num'>" + (i + 1) + "</td><td class='num'>" + num(c.calls) + "</td><td class='num'>" + num(c.candidate_mean_rank, 2) + "</td><td class='num'>" + num(c.best_mean_rank, 2) + "</td></tr>"; });
      sec.appendChild(el("details", null, "<summary class='small'>every step of the search</summary><table class='trace'><tr><th class='num'>step</th><th class='num'>LLM calls</th><th class='num'>candidate</th><th class='num'>best so far</th></tr>" + rows.join("") + "</table>"));
    });
    if (!any) root.innerHTML = "<div class='empty'>no search in this study (the scenario gave the STS text; sts.optimize.budget_calls: 0)</div>";
  }
  function logprobSearch(sec, s, se) {
    sec.appendChild(el("h3", null, "Search on " + esc(s.catalog) + " <span class='muted small'>by log-probability, scored with " + esc(se.scored_with) + "; " + num(se.steps) + " steps of " + num(se.candidates) + " candidates on " + num(se.step_orders) + " fresh order(s) each; " + num(se.calls) + " LLM calls</span>"));
    sec.appendChild(el("p", { "class": "small" }, "log P(the answer begins with the target) on each step's fresh orders: " + num(se.no_sts_logprob_mean, 2) + " without an STS (mean), " + num(se.start_logprob, 2) + " with the starting STS, <b>" + num(se.best_logprob_last, 2) + "</b> with the best found (last steps): <span class='mono'>" + esc(se.sts) + "</span>"));
    var xs = se.curve.map(function (c) { return c.calls; });
    X.lineChart(sec, { id: "search-" + s.key, title: "log P(answer begins with the target) as the search spends LLM calls (higher is better)", x: xs, xlabel: "LLM calls spent", ylabel: "log-probability", ymin0: false,
      series: [{ name: "best so far", y: se.curve.map(function (c) { return c.best_logprob; }), color: RED, width: 3 },
        { name: "best candidate", y: se.curve.map(function (c) { return c.candidate_logprob; }), color: GREY, width: 1, dash: "2,3" },
        { name: "no STS", y: se.curve.map(function (c) { return c.no_sts_logprob; }), color: "#222", dash: "6,4", width: 1 }] });
    var rows = se.curve.map(function (c, i) { return "<tr><td class='num'>" + (i + 1) + "</td><td class='num'>" + num(c.calls) + "</td><td class='num'>" + num(c.no_sts_logprob, 2) + "</td><td class='num'>" + num(c.best_logprob, 2) + "</td><td class='num'>" + num(c.candidate_logprob, 2) + "</td><td class='num'>" + num(c.best_place, 1) + "</td><td>" + (c.accepted ? "yes" : "") + "</td></tr>"; });
    sec.appendChild(el("details", null, "<summary class='small'>every step of the search</summary><table class='trace'><tr><th class='num'>step</th><th class='num'>LLM calls</th><th class='num'>no STS</th><th class='num'>best so far</th><th class='num'>best candidate</th><th class='num'>target's place</th><th>accepted</th></tr>" + rows.join("") + "</table>"));
  }
  function stsWorld(root) {
    var w = DATA.world;
    if (!w) { root.innerHTML = "<div class='empty'>no in-world A/B in this study (sts.world: false, --no-world, or it did not finish)</div>"; return; }
    var h = ["<p class='muted'>The same world and seed twice, with and without the STS in the target's text; recommender <b>" + esc(w.recommender) + "</b>, brains " + esc((w.brains || []).join(", ")) + ".",
      " Each arm is an ordinary run: " + ["without", "with"].map(function (a) { return w.reports && w.reports[a] ? "<a id='world-" + a + "' href='" + esc(w.reports[a]) + "'>" + a + " the STS</a>" : a + " the STS (no report.html)"; }).join(", ") + ".</p>"];
    h.push("<table id='world-table'><tr><th>figure</th><th class='num'>without</th><th class='num'>with</th><th class='num'>difference</th></tr>");
    Object.keys(w.difference || {}).forEach(function (k) {
      var d = w.difference[k];
      h.push("<tr data-key='" + esc(k) + "'><td>" + esc(k.replace(/_/g, " ")) + "</td><td class='num'>" + num(w.without[k]) + "</td><td class='num'>" + num(w["with"][k]) + "</td><td class='num'>" + (d !== null && d > 0 ? "+" : "") + num(d) + "</td></tr>");
    });
    h.push("</table><div class='grid2' id='world-charts'></div>");
    root.innerHTML = h.join("");
    var grid = $("#world-charts");
    var ids = {};
    ["with", "without"].forEach(function (a) { Object.keys(w[a].impressions_by_item || {}).concat(Object.keys(w[a].watches_by_item || {})).forEach(function (i) { ids[i] = true; }); });
    var cats = Object.keys(ids).sort(function (a, b) { return Number(a) - Number(b); });
    ["impressions_by_item", "watches_by_item"].forEach(function (key) {
      barChart(grid, { id: "world-" + key, title: key.replace(/_/g, " ") + " (item id)", cats: cats, xlabel: "item id", ylabel: key.split("_")[0],
        series: [{ name: "without STS", values: cats.map(function (i) { return (w.without[key] || {})[i] || 0; }), color: GREY },
          { name: "with STS", values: cats.map(function (i) { return (w["with"][key] || {})[i] || 0; }), color: RED }] });
    });
  }
  function stsAttacks(root) {
    var h = [], any = false;
    (DATA.studies || []).forEach(function (s) {
      if (!s.matrix) return;
      any = true;
      h.push("<div class='panel sts-matrix' data-catalog='" + esc(s.key) + "'><h3>" + esc(s.catalog) + ": attacks on ‘" + esc(s.target) + "’ under each defence</h3>");
      h.push("<p class='muted small'>Every attack is ranked on the same product orders as the no-attack arm of its defence; the gain is rank without − rank with (above 0: the attack moved the target up), with its paired 95% interval. Detected: the share of attacked rankings in which the defence flagged the target; false positives: the share of clean items it flagged.</p>");
      h.push("<div style='overflow:auto'><table class='matrix-table'><tr><th>defence</th><th>recommender</th><th>attack</th><th class='num'>mean rank without → with</th><th class='num'>gain</th><th class='num'>top-1 with</th><th class='num'>detected</th><th class='num'>false positives</th></tr>");
      Object.keys(s.matrix).forEach(function (d) {
        Object.keys(s.matrix[d]).forEach(function (rec) {
          var cell = s.matrix[d][rec];
          Object.keys(cell.attacks).forEach(function (a) {
            var p = cell.attacks[a];
            h.push("<tr data-defence='" + esc(d) + "' data-attack='" + esc(a) + "'><td>" + esc(d) + "</td><td>" + esc(rec) + "</td><td>" + esc(a) + "</td><td class='num'>" + num(p.mean_rank_without, 2) + " → " + num(p.mean_rank_with, 2) +
              "</td><td class='num gain'>" + withCi(p.mean_rank_gain, p.mean_rank_gain_ci, function (v) { return num(v, 2); }) + "</td><td class='num'>" + withCi(p.top1_with, p.top1_with_ci, pct) +
              "</td><td class='num'>" + (p.detected === undefined || p.detected === null ? "–" : withCi(p.detected, p.detected_ci, pct)) + "</td><td class='num'>" + (cell.false_positive_rate === undefined ? "–" : pct(cell.false_positive_rate)) + "</td></tr>");
          });
        });
      });
      h.push("</table></div>");
      var texts = (s.attack_texts || {}).texts || {};
      h.push("<details><summary class='small'>the attack texts</summary><table>" + Object.keys(texts).map(function (k) { return "<tr><td>" + esc(k) + "</td><td class='mono small'>" + esc(texts[k]) + "</td></tr>"; }).join("") + "</table></details></div>");
    });
    root.innerHTML = any ? h.join("") : "<div class='empty'>only the STS in this study (sts.attacks and sts.defences at their defaults)</div>";
  }
  X.pages.sts = { views: [["overview", "Protocol"], ["ranks", "Ranks"], ["search", "Search"], ["attacks", "Attacks"], ["world", "World A/B"]],
    render: { overview: stsOverview, ranks: stsRanks, search: stsSearch, attacks: stsAttacks, world: stsWorld } };

  // ================================================================== fidelity
  var CHOOSERS = [["brain", "brain"], ["popularity", "popularity (same picks)"], ["genre", "genre (same picks)"], ["random", "random (same picks)"]];
  var CHOOSER_COLORS = { brain: "#2f6fd6", popularity: "#d9822b", genre: "#1f8a4c", random: GREY, agent4rec: "#b83280" };
  var METRICS = [["accuracy", "accuracy"], ["precision", "precision"], ["recall", "recall"], ["f1", "F1"]];
  function R() { return DATA.result || {}; }
  function fidOverview(root) {
    var r = R(), d = r.data || {}, st = r.settings || {}, h = [];
    h.push("<p class='muted' id='fid-settings'>Data " + esc(d.path) + " — " + esc(d.holdout) + "; <b>" + num(d.users) + "</b> users (of " + num(d.eligible_users) + " with " + num(st.min_history) +
      "+ history ratings and a held-out rating of " + num(st.like) + "+), " + num(d.items) + " items. Pages of " + num(st.page_size) + (st.session ? " in one session each" : ", each a fresh session") +
      ", seed " + esc(st.seed) + ". Intervals: 95% bootstrap over users (" + num(st.bootstrap) + " resamples). Baselines pick as many items per user as the brain did.</p>");
    h.push("<div style='overflow:auto'><table id='fid-table'><tr><th>ratio</th><th>chooser</th><th class='num'>accuracy</th><th class='num'>precision</th><th class='num'>recall</th><th class='num'>F1 (pooled)</th><th class='num'>F1 per user</th><th class='num'>AUC</th></tr>");
    Object.keys(r.ratios || {}).forEach(function (ratio) {
      var res = r.ratios[ratio];
      CHOOSERS.forEach(function (c) {
        var x = res[c[0]];
        if (!x) return;
        var mi = x.micro || {}, pu = x.per_user || {}, mc = x.micro_ci || {}, pc = x.per_user_ci || {};
        h.push("<tr data-ratio='" + esc(ratio) + "' data-chooser='" + c[0] + "'" + (c[0] === "brain" ? " class='brainrow'" : "") + "><td>" + esc(ratio) + "</td><td>" + (c[0] === "brain" ? "<b>brain</b>" : esc(c[1])) + "</td>" +
          ["accuracy", "precision", "recall"].map(function (m) { return "<td class='num'>" + withCi(mi[m], mc[m], f3) + "</td>"; }).join("") +
          "<td class='num f1'>" + withCi(mi.f1, mc.f1, f3) + "</td><td class='num f1u'>" + withCi(pu.f1, pc.f1, f3) + "</td><td class='num auc'>" + num(x.auc, 3) + "</td></tr>");
      });
      if (DATA.agent4rec_f1 && DATA.agent4rec_f1[ratio] !== undefined)
        h.push("<tr data-ratio='" + esc(ratio) + "' data-chooser='agent4rec' class='muted'><td>" + esc(ratio) + "</td><td>Agent4Rec (public reproduction, per user)</td><td></td><td></td><td></td><td></td><td class='num'>" + num(DATA.agent4rec_f1[ratio], 3) + "</td><td></td></tr>");
    });
    h.push("</table></div>");
    h.push("<p class='small'>Pick rate of the brain (share of shown items it watched): " + Object.keys(r.ratios || {}).map(function (k) { var x = r.ratios[k]; return esc(k) + " " + num(x.brain.pick_rate, 3) + " (positives " + num(x.positive_share, 3) + ")"; }).join(", ") + ".</p>");
    if (r.llm) h.push("<p class='small'>LLM: " + num(r.llm.decisions) + " decisions, " + num(r.llm.fallbacks) + " fell back to the parametric brain.</p>");
    h.push("<div class='grid2'><div class='panel'><h3>Brain</h3>" + X.kvTable({ names: (r.brain.names || []).join(", "), "class": r.brain["class"], params: JSON.stringify(r.brain.params || {}), seconds: r.seconds }) + "</div>");
    var cal = DATA.calibration || {}, keys = Object.keys(cal);
    h.push("<div class='panel'><h3>Fitted from the history</h3>" + (keys.length ? "<details><summary class='small'>" + keys.length + " calibration values</summary>" + X.kvTable(cal) + "</details>" : "<div class='empty'>none</div>") + "</div></div>");
    root.innerHTML = h.join("");
  }
  function fidChoices(root) {
    var r = R(), ratios = Object.keys(r.ratios || {});
    root.innerHTML = "<div class='toolbar small'>scores: <label><input type='radio' name='fid-mode' value='per_user' checked> averaged per user</label> <label><input type='radio' name='fid-mode' value='micro'> pooled over users</label>" +
      " <span class='muted'>(bars: the value; whiskers: its 95% interval)</span></div><div class='grid2' id='fid-charts'></div>";
    function draw(mode) {
      var grid = $("#fid-charts");
      grid.innerHTML = "";
      METRICS.forEach(function (mt) {
        var series = CHOOSERS.map(function (c) {
          var get = function (ratio, part) { var x = r.ratios[ratio][c[0]] || {}; return (x[part] || {})[mt[0]]; };
          return { name: c[0], color: CHOOSER_COLORS[c[0]], values: ratios.map(function (q) { return get(q, mode); }),
            lo: ratios.map(function (q) { var ci = get(q, mode + "_ci"); return ci ? ci[0] : null; }), hi: ratios.map(function (q) { var ci = get(q, mode + "_ci"); return ci ? ci[1] : null; }) };
        });
        if (mt[0] === "f1" && mode === "per_user" && DATA.agent4rec_f1)
          series.push({ name: "Agent4Rec (repr.)", color: CHOOSER_COLORS.agent4rec, values: ratios.map(function (q) { var v = DATA.agent4rec_f1[q]; return v === undefined ? null : v; }) });
        barChart(grid, { id: "fid-" + mt[0], title: mt[1] + (mode === "micro" ? " (pooled)" : " (per user)"), cats: ratios, xlabel: "positives : negatives", ylabel: mt[1], ymax: 1, series: series });
      });
      barChart(grid, { id: "fid-auc", title: "AUC of the scores (0.5: no better than chance)", cats: ratios, xlabel: "positives : negatives", ylabel: "AUC", ymax: 1,
        series: ["brain", "popularity", "genre", "random"].map(function (c) { return { name: c, color: CHOOSER_COLORS[c], values: ratios.map(function (q) { var x = r.ratios[q][c] || {}; return x.auc === undefined ? null : x.auc; }) }; }) });
    }
    $all("input[name='fid-mode']", root).forEach(function (inp) { inp.addEventListener("change", function () { draw(inp.value); }); });
    draw("per_user");
  }
  var PREDICTORS = [["brain", "brain (emitted ratings)"], ["brain_expected", "brain's expected rating"], ["user_mean", "user's history mean"], ["item_mean", "item's history mean (shrunk)"], ["global_mean", "global history mean"]];
  function fidRatings(root) {
    var rt = R().ratings || {}, h = [];
    h.push("<table id='rating-table'><tr><th>predictor</th><th class='num'>MAE</th><th class='num'>RMSE</th><th class='num'>correlation</th><th class='num'>ratings</th></tr>");
    PREDICTORS.forEach(function (p) {
      var x = rt[p[0]];
      if (!x || !x.n) return;
      h.push("<tr data-predictor='" + p[0] + "'><td>" + (p[0] === "brain" ? "<b>" + esc(p[1]) + "</b>" : esc(p[1])) + "</td><td class='num mae'>" + withCi(x.mae, x.mae_ci, f3) + "</td><td class='num'>" + withCi(x.rmse, x.rmse_ci, f3) +
        "</td><td class='num'>" + num(x.corr, 3) + "</td><td class='num'>" + num(x.n) + "</td></tr>");
    });
    h.push("</table>");
    var mean = rt.mean || {};
    h.push("<p class='small'>Mean rating: simulated " + num(mean.simulated, 3) + ", real " + num(mean.real, 3) + ". Lower MAE and RMSE are better; the history means are the baselines.</p><div class='grid2' id='rating-charts'></div>");
    root.innerHTML = h.join("");
    var hist = rt.histogram;
    if (hist) {
      barChart($("#rating-charts"), { id: "rating-histogram", title: "ratings of the held-out items: real vs simulated (total-variation distance " + num(hist.tv_distance, 3) + ")",
        cats: hist.stars.map(function (v) { return String(v); }), xlabel: "stars", ylabel: "share of ratings",
        series: [{ name: "real (held out)", values: hist.real, color: "#2f6fd6" }, { name: "simulated", values: hist.simulated, color: "#d9822b" }],
        note: "Half stars: simulated " + pct((hist.half_star_share || {}).simulated) + ", real " + pct((hist.half_star_share || {}).real) + "." });
    }
  }
  function fidUsers(root) {
    var pu = DATA.per_user_f1 || {}, ratios = Object.keys(pu);
    if (!ratios.length) { root.innerHTML = "<div class='empty'>no per-user rows (fidelity_users.csv is missing or empty)</div>"; return; }
    var h = ["<p class='muted'>Each user's F1 at each ratio, from <span class='mono'>fidelity_users.csv</span> (2 × hits / (picks + liked items shown)).</p>",
      "<table id='f1-users'><tr><th>ratio</th><th class='num'>users</th><th class='num'>mean F1</th><th class='num'>median F1</th><th class='num'>users at F1 = 0</th></tr>"];
    ratios.forEach(function (q) { var x = pu[q]; h.push("<tr data-ratio='" + esc(q) + "'><td>" + esc(q) + "</td><td class='num'>" + num(x.users) + "</td><td class='num'>" + num(x.mean, 3) + "</td><td class='num'>" + num(x.median, 3) + "</td><td class='num'>" + pct(x.zero) + "</td></tr>"); });
    h.push("</table><div id='f1-hist'></div>");
    root.innerHTML = h.join("");
    var nb = pu[ratios[0]].counts.length, cats = [];
    for (var i = 0; i < nb; i++) cats.push(num(i / nb, 1) + "–" + num((i + 1) / nb, 1));
    barChart($("#f1-hist"), { id: "f1-histogram", title: "users by F1 (share of the users at each ratio)", cats: cats, xlabel: "F1 of the user's picks", ylabel: "share of users", width: 760,
      series: ratios.map(function (q, j) { var x = pu[q]; return { name: q, color: COLORS[j % COLORS.length], values: x.counts.map(function (c) { return c / Math.max(x.users, 1); }) }; }) });
  }
  X.pages.fidelity = { views: [["overview", "Scores"], ["choices", "Choices"], ["ratings", "Ratings"], ["users", "Users"]],
    render: { overview: fidOverview, choices: fidChoices, ratings: fidRatings, users: fidUsers } };
})();
