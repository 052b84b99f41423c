// The dashboard page: polls /api/state every 2 s and draws it. Charts are uPlot (vendored, see vendor/README.md).
// All text from the journal goes into the DOM as text nodes, never as HTML.
(function () {
  "use strict";
  var POLL_MS = 2000;
  var C = { keep: "#1a9850", discard: "#9e9e9e", crash: "#d73027", rejected: "#c51b7d", test: "#4575b4",
            floor: "#555555", loss: "#2f6fdd" };
  var params = new URLSearchParams(location.search);
  var tag = params.get("tag");
  // The server's secret comes in the address `autoresearch dashboard` printed; it is kept for this tab (a reload
  // still works) and taken out of the address bar, where a screenshot or a shoulder would see it.
  var token = params.get("token") || sessionStorage.getItem("autoresearch-token") || "";
  if (params.has("token")) {
    sessionStorage.setItem("autoresearch-token", token);
    params.delete("token");
    history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : "") + location.hash);
  }
  var progress = null, progressKey = "", loss = null, lossKey = "", tableKey = "", diffKey = "";
  var selected = null;       // {number, attempt} of a clicked row; null shows the best
  var diffKind = "diff";     // or "diff_from_baseline"
  var last = null;           // the latest state

  function api(path) {
    var query = [];
    if (tag) query.push("tag=" + encodeURIComponent(tag));
    if (token) query.push("token=" + encodeURIComponent(token));
    return path + (query.length ? (path.indexOf("?") < 0 ? "?" : "&") + query.join("&") : "");
  }
  function $(id) { return document.getElementById(id); }
  function el(name, cls, text) {
    var e = document.createElement(name);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function num(v, d, unit) { return v === null || v === undefined ? "–" : v.toFixed(d) + (unit || ""); }
  function signed(v, d) { return v === null || v === undefined ? "–" : (v >= 0 ? "+" : "") + v.toFixed(d); }
  function pct(v) { return v === null || v === undefined ? "–" : Math.round(v * 100) + "%"; }
  function hours(h) { return h < 1 ? Math.round(h * 60) + " min" : h.toFixed(1) + " h"; }
  function secs(s) { return s === null || s === undefined ? "–" : s < 120 ? Math.round(s) + "s" : (s / 60).toFixed(1) + " min"; }
  function width(id) { return Math.max(280, $(id).parentNode.clientWidth - 26); }

  // -- summary -------------------------------------------------------------------------------------------------------
  // The run's own figure (a task's metric, or the GPT task's val_bpb) and how its held-out twin is named.
  var M = "val_bpb", T = "test_bpb", UNIT = " bpb", MAXIMIZE = false;
  function setMetric(s) {
    M = (s && s.metric) || "val_bpb";
    MAXIMIZE = !!(s && s.goal === "maximize");
    T = M === "val_bpb" ? "test_bpb" : "holdout " + M;
    UNIT = M === "val_bpb" ? " bpb" : "";
    var heads = document.querySelectorAll("th, [data-metric]");  // headers, and the notes that name the figure
    for (var i = 0; i < heads.length; i++) {
      var h = heads[i];
      if (!h.dataset.label) h.dataset.label = h.textContent;
      h.textContent = h.dataset.label.replace("test_bpb", T).replace("val_bpb", M);
      if (h.tagName === "TH" && /^(val|test)_bpb$/.test(h.dataset.label)) {  // the figure's columns: best first
        if (MAXIMIZE) h.setAttribute("data-first", "descending"); else h.removeAttribute("data-first");
      }
    }
  }

  function cards(s) {
    var out = [];
    if (s.baseline !== null && s.best !== null) {
      out.push([M, num(s.baseline, 4) + " → " + num(s.best, 4), "baseline → best (#" + s.best_number + ")"]);
      var noise = s.noise_std > 0 ? (s.gain / s.noise_std).toFixed(1) + "× the noise σ"
        : MAXIMIZE ? "best minus baseline" : "baseline minus best";
      out.push(["gain", num(s.gain, 4) + UNIT + " (" + signed(s.gain_pct === null ? null : (MAXIMIZE ? s.gain_pct : -s.gain_pct), 2) + "%)", noise]);
    } else {
      out.push([M, "–", "nothing kept yet"]);
    }
    if (s.baseline_test !== null && s.best_test !== null)
      out.push([T + " (held out)", num(s.baseline_test, 4) + " → " + num(s.best_test, 4),
                signed(s.best_test - s.baseline_test, 4) + UNIT + "; never shown to the agent"]);
    if (s.floor !== null)
      out.push(["entropy floor", num(s.floor, 4), s.best !== null ? "best is " + num(s.best - s.floor, 4) + " above it" : ""]);
    if (s.noise_std !== null) out.push(["noise floor", "σ " + num(s.noise_std, 4), s.noise_runs ? "over " + s.noise_runs + " runs" : ""]);
    out.push(["experiments", String(s.experiments), s.attempts + " attempts" + (s.per_hour ? " · " + s.per_hour.toFixed(1) + " per hour" : "")]);
    out.push(["kept / crashed / rejected", pct(s.keep_rate) + " / " + pct(s.crash_rate) + " / " + pct(s.reject_rate),
              s.kept + " kept · " + s.discarded + " discarded · " + s.crashed + " crashed · " + s.rejected + " rejected"]);
    out.push(["time", hours(s.wall_hours), "runs " + hours(s.train_hours) + " · agent " + hours(s.agent_hours)]);
    out.push(["agent cost", "$" + s.cost.toFixed(2), s.input_tokens.toLocaleString("en-US") + " tokens in · " +
              s.output_tokens.toLocaleString("en-US") + " out"]);
    return out;
  }
  function renderSummary(s) {
    var box = $("summary");
    box.textContent = "";
    cards(s).forEach(function (c) {
      var card = el("div", "card");
      card.appendChild(el("div", "k", c[0]));
      card.appendChild(el("div", "v", c[1]));
      card.appendChild(el("div", "d", c[2]));
      box.appendChild(card);
    });
  }

  // -- the progress chart ----------------------------------------------------------------------------------------------
  function yRange(keeps, discards, floor) {  // as plot.py's _y_range: far-off discards are pinned to the top
    var vals = [];
    keeps.forEach(function (r) { vals.push(r.val_bpb); if (r.test_bpb !== null) vals.push(r.test_bpb); });
    if (!vals.length) return [0, 1];
    var lo = Math.min.apply(null, vals), hi = Math.max.apply(null, vals);
    var span = Math.max(hi - lo, 0.02 * hi, 1e-3), cap = hi + 2 * span;
    discards.forEach(function (r) { if (r.val_bpb !== null && r.val_bpb <= cap) hi = Math.max(hi, r.val_bpb); });
    if (floor !== null && lo - floor < 1.5 * span) lo = Math.min(lo, floor);
    span = Math.max(hi - lo, span);
    return [lo - 0.12 * span, hi + 0.3 * span];
  }
  function progressData(rows, s) {
    var finals = rows.filter(function (r) { return r.final && r.status; });
    var keeps = finals.filter(function (r) { return r.status === "keep" && r.val_bpb !== null; });
    var discards = finals.filter(function (r) { return r.status === "discard"; });
    var yr = yRange(keeps, discards, s.floor), lo = yr[0], hi = yr[1], pad = (hi - lo) * 0.03;
    var x = [], base = [], kept = [], disc = [], off = [], crash = [], rej = [], best = [], test = [], floor = [];
    var b = null, t = null;
    finals.forEach(function (r) {
      x.push(r.number);
      var v = r.val_bpb;
      base.push(r.status === "keep" && r.number === 1 ? v : null);  // a reference, not a kept change
      kept.push(r.status === "keep" && r.number !== 1 ? v : null);
      disc.push(r.status === "discard" && v !== null && v <= hi ? v : null);
      off.push(r.status === "discard" && v !== null && v > hi ? hi - pad : null);
      crash.push(r.status === "crash" ? hi - pad : null);  // no val_bpb: at the top, with the worst (lower is better)
      rej.push(r.status === "rejected" ? hi - pad : null);
      if (r.status === "keep" && v !== null) { b = v; t = r.test_bpb; }
      best.push(b);
      test.push(t);
      floor.push(s.floor !== null && s.floor >= lo ? s.floor : null);
    });
    return { finals: finals, range: yr, data: [x, base, kept, disc, off, crash, rej, best, test, floor] };
  }
  function dots(label, color, size, show) {
    return { label: label, stroke: color, fill: color, width: 0, paths: function () { return null; }, show: show !== false,
             points: { show: true, size: size, stroke: color, fill: color } };
  }
  function renderProgress(st) {
    var pd = progressData(st.experiments, st.summary);
    var key = JSON.stringify(pd.data) + width("progress-chart");
    if (key === progressKey) return;
    progressKey = key;
    if (progress) progress.destroy();
    var stepped = uPlot.paths.stepped({ align: 1 });
    var all = [
      dots("baseline", C.test, 10), dots("kept", C.keep, 10), dots("discarded", C.discard, 7), dots("discarded, off the chart", "#cfcfcf", 7),
      dots("crashed", C.crash, 8), dots("rejected", C.rejected, 8),
      { label: "running best", stroke: C.keep, width: 2, paths: stepped, points: { show: false } },
      { label: T + " of the best", stroke: C.test, width: 1.5, dash: [6, 4], paths: stepped, points: { show: false } },
      { label: "entropy floor", stroke: C.floor, width: 1, dash: [4, 4], points: { show: false } }
    ];
    var series = [{ label: "#" }], data = [pd.data[0]];
    all.forEach(function (s, i) {  // only what this run has: no legend entry for crashes that never happened
      if (pd.data[i + 1].some(function (v) { return v !== null; })) { series.push(s); data.push(pd.data[i + 1]); }
    });
    var opts = {
      width: width("progress-chart"), height: 320, legend: { live: false },
      scales: { x: { time: false, range: function (u, a, b) { return [0.5, Math.max(b, 2) + 0.5]; } },
                y: { range: function () { return pd.range; } } },
      axes: [{ label: "experiment", incrs: [1, 2, 5, 10, 20, 50, 100] }, { label: M + (MAXIMIZE ? " (higher is better)" : " (lower is better)"), size: 60 }],
      series: series,
      hooks: { setCursor: [function (u) {
        var i = u.cursor.idx, r = i === null || i === undefined ? null : pd.finals[i];
        $("hover").textContent = r ? "#" + r.label + " · " + r.status + (r.val_bpb !== null ? " · " + M + " " +
          num(r.val_bpb, 6) : "") + " · " + r.description : "Hover the chart to see an experiment.";
      }] }
    };
    progress = new uPlot(opts, data, $("progress-chart"));
  }

  // -- training now ------------------------------------------------------------------------------------------------
  function renderTraining(st) {
    var tr = st.training, cur = st.current;
    var repeat = tr && tr.repeat ? " (repeat " + tr.repeat + ", another seed)" : "";
    $("now-title").textContent = (cur ? "Now: experiment " + cur.number + (cur.attempt ? "." + cur.attempt : "") :
      tr ? "Last trained: experiment " + tr.number + (tr.attempt ? "." + tr.attempt : "") : "Training") + repeat;
    var desc = cur ? cur.description + (cur.state !== "running" ? " (" + cur.state + ": the agent is at work)" : "") :
      tr ? tr.description + " (" + tr.status + ")" : st.run.state === "running" ? "waiting for the first experiment" :
      "the run is stopped";
    $("now-desc").textContent = desc;
    var lastp = tr && tr.live ? tr.last : null;
    $("now-bar").style.width = (lastp ? Math.min(100, lastp.percent) : tr && !tr.live ? 100 : 0) + "%";
    var stats = [];
    if (tr && tr.last) {
      stats.push("step " + tr.last.step, "loss " + num(tr.last.loss, 4));
      if (tr.last.tokens_per_second) stats.push(Math.round(tr.last.tokens_per_second).toLocaleString("en-US") + " tok/s");
      if (tr.live && tr.last.remaining !== null) stats.push(Math.round(tr.last.remaining) + "s left");
    }
    $("now-stats").textContent = stats.join(" · ");
    var key = tr ? tr.number + "." + tr.attempt + "." + tr.repeat + ":" + width("loss-chart") : "";
    if (key !== lossKey) {
      lossKey = key;
      if (loss) { loss.destroy(); loss = null; }
      if (tr) loss = new uPlot({
        width: width("loss-chart"), height: 220, legend: { show: false },
        scales: { x: { time: false } },
        axes: [{ label: "step" }, { label: "training loss", size: 55 }],
        series: [{ label: "step" }, { label: "loss", stroke: C.loss, width: 1.5, spanGaps: false, points: { show: false } }]
      }, [tr.steps, tr.loss], $("loss-chart"));
    } else if (loss && tr) {
      loss.setData([tr.steps, tr.loss]);
    }
  }

  // -- the table -----------------------------------------------------------------------------------------------------
  function cell(tr, value, shown, numeric) {
    var td = el("td", numeric ? "num" : "", shown);
    td.setAttribute("data-v", value === null || value === undefined ? "" : String(value));
    tr.appendChild(td);
    return td;
  }
  function renderTable(rows) {
    var key = JSON.stringify(rows);
    if (key === tableKey) return;
    tableKey = key;
    var table = $("experiments"), tbody = table.tBodies[0];
    tbody.textContent = "";
    rows.forEach(function (r) {
      var status = r.status || r.state;
      var tr = el("tr", "st-" + status + (r.final ? "" : " superseded") + (r.val_only ? " val-only" : ""));
      tr.setAttribute("data-n", r.label);
      cell(tr, r.number + r.attempt / 10, r.label, true);
      var c = cell(tr, r.commit, null); c.appendChild(el("code", "", r.commit));
      var p = cell(tr, status, null); p.appendChild(el("span", "pill " + status, status));
      cell(tr, r.outcome || "", r.outcome || "");
      cell(tr, r.val_bpb, num(r.val_bpb, 6), true);
      cell(tr, r.test_bpb, num(r.test_bpb, 6), true);
      cell(tr, r.delta, r.delta === null ? "–" : signed(r.delta, 4), true);
      cell(tr, r.memory_gb, num(r.memory_gb, 1, " GB"), true);
      cell(tr, r.steps, r.steps === null ? "–" : String(r.steps), true);
      cell(tr, r.tokens_per_second, r.tokens_per_second === null ? "–" : Math.round(r.tokens_per_second).toLocaleString("en-US"), true);
      cell(tr, r.seconds, secs(r.seconds), true);
      cell(tr, r.cost, r.cost ? "$" + r.cost.toFixed(3) : "–", true);
      var d = cell(tr, r.description, r.description);
      if (r.attempt) d.appendChild(el("span", "badge fix", "fix " + r.attempt));
      if (r.load_note) d.appendChild(el("div", "reason", r.load_note));
      if (r.val_only) {
        var b = el("span", "badge val-only", "val-only gain");
        b.title = "kept for " + M + ", but the held-out " + T + " got worse by " + signed(r.test_change, 4);
        d.appendChild(b);
      }
      if ((r.status === "crash" || r.status === "rejected") && r.reason)
        d.appendChild(el("div", "reason", (r.outcome || r.status) + ": " + r.reason));
      tr.addEventListener("click", function () { selected = { number: r.number, attempt: r.attempt }; diffKey = ""; renderDiff(); });
      tr.style.cursor = "pointer";
      tbody.appendChild(tr);
    });
    SortableTable.make(table);
    SortableTable.resort(table);
  }

  // -- diffs ---------------------------------------------------------------------------------------------------------
  function showDiff(text) {
    var pre = $("diff");
    pre.textContent = "";
    if (!text || !text.trim()) { pre.appendChild(el("span", "ctx", "(no diff)")); return; }
    text.replace(/\n$/, "").split("\n").forEach(function (line) {
      var k = /^(\+\+\+|---)/.test(line) ? "meta" : /^@@/.test(line) ? "hunk" : /^\+/.test(line) ? "add" :
              /^-/.test(line) ? "del" : "ctx";
      pre.appendChild(el("span", k, line || " "));
    });
  }
  function renderDiff() {
    if (!last || !last.run) return;
    var tabs = $("diff-tabs");
    if (selected) {
      var path = "/api/experiment/" + selected.number + "/" + selected.attempt;
      if (diffKey === path) return;
      diffKey = path;
      tabs.style.display = "none";
      fetch(api(path)).then(function (r) { return r.json(); }).then(function (e) {
        $("diff-title").textContent = "Experiment " + e.number + (e.attempt ? "." + e.attempt : "") + " · " + (e.status || e.state);
        var desc = $("diff-desc");
        desc.textContent = e.description + (e.reason ? " — " + e.reason : "") + " ";
        var back = el("a", "", "back to the best");
        back.href = "#";
        back.addEventListener("click", function (ev) { ev.preventDefault(); selected = null; diffKey = ""; renderDiff(); });
        desc.appendChild(back);
        showDiff(e.diff + (e.error_tail ? "\n" + e.error_tail : ""));
      });
      return;
    }
    var best = last.best;
    var key = best ? best.number + "." + best.attempt + ":" + diffKind : "none";
    if (key === diffKey) return;
    diffKey = key;
    tabs.style.display = best ? "" : "none";
    $("diff-title").textContent = best ? "Best so far: experiment " + best.number : "Best so far";
    $("diff-desc").textContent = best ? best.description + " · " + M + " " + num(best.val_bpb, 6) +
      (best.test_bpb !== null ? " · " + T + " " + num(best.test_bpb, 6) : "") + " · " + best.commit : "nothing kept yet";
    showDiff(best ? best[diffKind] : "");
  }

  // -- the loop ------------------------------------------------------------------------------------------------------
  // -- workers and agents -------------------------------------------------------------------------------------------
  function fill(id, rows) {
    var tbody = $(id).tBodies[0];
    tbody.textContent = "";
    rows.forEach(function (cells) {
      var tr = el("tr", "");
      cells.forEach(function (c, i) { tr.appendChild(el("td", i > 1 && typeof c === "number" ? "num" : "", String(c))); });
      tbody.appendChild(tr);
    });
  }
  function renderWorkers(st) {
    var ws = st.workers || [];
    $("workers-panel").hidden = !ws.length;
    fill("workers", ws.map(function (w) {
      return [w.worker ? "w" + w.worker : "–", [w.device, w.node].filter(Boolean).join(" · ") || "–",
              w.number + (w.attempt ? "." + w.attempt : ""), w.agent, w.state,
              w.percent === null ? "–" : Math.round(w.percent) + "%", num(w.loss, 4), secs(w.seconds),
              w.description];
    }));
    var ag = st.agents || [];
    $("agents-panel").hidden = ag.length < 2;
    fill("agents", ag.map(function (a) {
      return [a.agent, a.experiments, a.kept, pct(a.keep_rate), num(a.gain, 4), num(a.gain_per_hour, 4),
              "$" + a.cost.toFixed(2), a.cost_per_keep === null ? "–" : "$" + a.cost_per_keep.toFixed(2)];
    }));
  }

  function render(st) {
    last = st;
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    if (!st.run) {
      $("runline").textContent = "waiting for a run in " + st.workspace + ": start one with `autoresearch run`";
      $("live").className = "live-dot";
      return;
    }
    document.title = "autoresearch " + st.run.tag;
    $("tag").textContent = st.run.tag;
    var running = st.run.state === "running";
    $("live").className = "live-dot" + (running ? " on" : "");
    $("runline").textContent = "branch " + st.run.branch + " · agent " + st.run.agent + " · " +
      (running ? "running" : "stopped" + (st.run.stop_reason ? ": " + st.run.stop_reason : ""));
    $("png").href = api("/progress.png");
    setMetric(st.summary);
    renderSummary(st.summary);
    renderProgress(st);
    renderTraining(st);
    renderWorkers(st);
    renderTable(st.experiments);
    renderDiff();
    document.body.setAttribute("data-ready", "1");
  }
  function poll() {
    fetch(api("/api/state"), { cache: "no-store" })
      .then(function (r) {
        if (r.status === 403) throw new Error("HTTP 403: open the address `autoresearch dashboard` printed, with its ?token=");
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(render)
      .catch(function (err) {
        $("live").className = "live-dot";
        $("updated").textContent = "cannot reach the server (" + err.message + "); retrying";
      })
      .then(function () { setTimeout(poll, POLL_MS); });
  }
  Array.prototype.forEach.call(document.querySelectorAll("#diff-tabs button"), function (b) {
    b.addEventListener("click", function () {
      diffKind = b.getAttribute("data-k");
      Array.prototype.forEach.call(b.parentNode.children, function (o) { o.className = o === b ? "on" : ""; });
      diffKey = "";
      renderDiff();
    });
  });
  window.addEventListener("resize", function () { progressKey = ""; lossKey = ""; if (last && last.run) { renderProgress(last); renderTraining(last); } });
  poll();
})();
