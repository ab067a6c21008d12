(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("wslab-data").textContent);
  var drill = document.getElementById("drill");
  var drillTitle = document.getElementById("drill-title");
  var drillBody = document.getElementById("drill-body");
  var backdrop = document.getElementById("backdrop");
  var matrix = document.getElementById("matrix");

  /* Build elements from text only: every string becomes a text node, never markup. */
  function h(tag, attrs) {
    var e = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (key) {
        var value = attrs[key];
        if (value === null || value === undefined || value === false) return;
        if (key === "class") e.className = value;
        else e.setAttribute(key, value === true ? "" : String(value));
      });
    }
    for (var i = 2; i < arguments.length; i++) add(e, arguments[i]);
    return e;
  }
  function add(parent, kid) {
    if (kid === null || kid === undefined || kid === false) return;
    if (Array.isArray(kid)) { kid.forEach(function (k) { add(parent, k); }); return; }
    parent.appendChild(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  function show(value) {
    if (value === null || value === undefined) return "null";
    return typeof value === "string" ? value : JSON.stringify(value);
  }
  function yesno(value) { return value ? "yes" : "no"; }
  function section(title) {
    var s = h("section", { class: "sec" }, h("h3", null, title));
    for (var i = 1; i < arguments.length; i++) add(s, arguments[i]);
    return s;
  }
  function kv(pairs) {
    var dl = h("dl", { class: "kv" });
    pairs.forEach(function (pair) {
      if (pair[1] === null || pair[1] === undefined || pair[1] === "") return;
      add(dl, [h("dt", null, pair[0]), h("dd", null, pair[1])]);
    });
    return dl.childNodes.length ? dl : null;
  }
  function pre(text, cls) { return h("pre", { class: cls || "block" }, text); }
  function more(summary, content, open) {
    if (!content) return null;
    return h("details", { class: "more", open: !!open }, h("summary", null, summary), content);
  }

  /* Wire data: request and response heads, with the server side marked against the client side. */
  var MARK = { same: " ", added: "+", removed: "−", rewritten: "~" };
  var WHAT = {
    added: "added: only the server received it",
    removed: "removed: the client sent it, the server never received it",
    rewritten: "rewritten: the server received another value"
  };
  function headerRow(name, value, status, was) {
    var row = h("div", { class: "hdr " + (status || "same"), "data-status": status || "same", title: WHAT[status] || null },
      h("span", { class: "mark" }, MARK[status] || " "),
      h("span", { class: "text" }, h("span", { class: "hn" }, name), ": ", h("span", { class: "hv" }, value)));
    if (status === "rewritten") add(row, h("span", { class: "was" }, "client sent: " + was));
    return row;
  }
  function requestLine(request, lineDiff) {
    var line = h("div", { class: "line" });
    ["method", "target", "version"].forEach(function (part, i) {
      if (i) add(line, " ");
      var changed = lineDiff && Object.prototype.hasOwnProperty.call(lineDiff, part);
      add(line, h("span", { class: changed ? "chg" : null, title: changed ? "client sent: " + lineDiff[part] : null },
        request[part]));
    });
    return line;
  }
  /* On the client's side, mark the headers that did not arrive as sent (lightly: the server side has the detail). */
  function lostOnTheWay(diff) {
    var lost = {};
    (diff || []).forEach(function (r) {
      if (r.status === "removed") lost[r.name.toLowerCase()] = { status: "gone", text: "did not reach the server" };
      if (r.status === "rewritten") {
        lost[r.name.toLowerCase()] = { status: "changed", text: "reached the server as: " + r.value };
      }
    });
    return lost;
  }
  function requestHead(request, diff, lineDiff, lost) {
    if (!request) return h("div", { class: "wire" }, h("div", { class: "none" }, "no request line arrived"));
    var box = h("div", { class: "wire" }, requestLine(request, lineDiff));
    if (diff) diff.forEach(function (r) { add(box, headerRow(r.name, r.value, r.status, r.was)); });
    else request.headers.forEach(function (p) {
      var note = lost && lost[p[0].toLowerCase()];
      var row = headerRow(p[0], p[1]);
      if (note) { row.classList.add("lost", note.status); row.title = note.text; }
      add(box, row);
    });
    if (!request.headers.length && !(diff && diff.length)) add(box, h("div", { class: "none" }, "no headers"));
    return box;
  }
  function responseHead(response, none) {
    if (!response) return h("div", { class: "wire" }, h("div", { class: "none" }, none));
    var box = h("div", { class: "wire" },
      h("div", { class: "line" }, (response.version || "HTTP/1.1") + " " + response.status + " " + (response.reason || "")));
    (response.headers || []).forEach(function (p) { add(box, headerRow(p[0], p[1])); });
    return box;
  }
  function diffLegend(diff, lineDiff) {
    var n = { added: 0, removed: 0, rewritten: 0 };
    (diff || []).forEach(function (r) { if (n[r.status] !== undefined) n[r.status]++; });
    var lineChanges = Object.keys(lineDiff || {}).length;
    if (!n.added && !n.removed && !n.rewritten && !lineChanges) {
      return h("div", { class: "difflegend" }, "headers arrived as sent (names compared case-insensitively)");
    }
    n.rewritten += lineChanges;
    function count(status, mark) {
      return h("span", { class: n[status] ? status : "zero" }, mark + " " + n[status] + " " + status);
    }
    return h("div", { class: "difflegend" }, count("added", "+"), count("removed", "−"), count("rewritten", "~"),
      "against what the client sent");
  }
  function changesSummary(diff, lineDiff) {
    var groups = { removed: [], added: [], rewritten: [] };
    (diff || []).forEach(function (r) { if (groups[r.status]) groups[r.status].push(r.name); });
    Object.keys(lineDiff || {}).forEach(function (part) { groups.rewritten.push("request " + part); });
    var parts = [];
    ["removed", "added", "rewritten"].forEach(function (status) {
      if (groups[status].length) parts.push(h("span", null, h("b", null, status + ": "), groups[status].join(", ")));
    });
    if (!parts.length) return null;
    var p = h("div", { class: "changes" }, "On the way to the server, headers were ");
    parts.forEach(function (part, i) { if (i) add(p, " · "); add(p, part); });
    return p;
  }
  function serverError(error) {
    if (!error) return null;
    return h("div", null,
      h("div", { class: "server-error" }, h("span", { class: "etype" }, "server error " + (error.type || "") + ": "), error.text),
      error.cause ? h("div", { class: "ecause" }, "caused by " + error.cause) : null);
  }

  function diagnosisBox(cell) {
    var first = cell.server[0];
    var d = cell.diagnosis;
    if (!d && !cell.error) return null;
    var box = h("div", { class: "diagnosis" + (cell.error && !d ? " labfail" : "") });
    if (d) {
      add(box, [
        h("div", { class: "rule" }, "diagnosis · " + d.rule),
        first ? serverError(first.error) : null,
        first ? changesSummary(first.header_diff, first.line_diff) : null,
        h("div", { class: "cause" }, h("b", null, "Cause. "), d.cause),
        h("div", { class: "fix-label" }, "Fix"),
        pre(d.fix, "fix")
      ]);
    } else if (first) {
      add(box, serverError(first.error));
    }
    if (cell.error) add(box, [h("div", { class: "fix-label" }, d ? "Lab error" : "Why it did not run"), pre(cell.error, "block")]);
    if (cell.log_tail) add(box, [h("div", { class: "fix-label" }, "Proxy log (last lines)"), pre(cell.log_tail, "block")]);
    return box;
  }

  function checksTable(checks) {
    if (!checks || !checks.length) return null;
    var table = h("table", { class: "grid" },
      h("thead", null, h("tr", null, h("th", null, "check"), h("th", null, "expected"), h("th", null, "actual"), h("th", { class: "okcol" }, "ok"))));
    var body = h("tbody");
    checks.forEach(function (c) {
      add(body, h("tr", { class: c.ok ? null : "notok" },
        h("td", null, c.name),
        h("td", { class: "mono" }, c.expected_text),
        h("td", { class: "mono" }, c.actual_text),
        h("td", { class: c.ok ? "ok" : "notok" }, c.ok ? "✓" : "✗")));
    });
    add(table, body);
    return table;
  }

  function notKept() {
    return h("div", { class: "wire" }, h("div", { class: "none" }, "not kept: another client of this cell"));
  }

  function connection(conn, index, count, sent, received, sentHint) {
    var title = "connection " + (count > 1 ? (index + 1) + " of " + count + " " : "") + "#" + conn.conn +
      (conn.peer ? " from " + conn.peer.join(":") : "");
    var closed = conn.closed ?
      "code " + conn.closed.code + (conn.closed.reason ? " '" + conn.closed.reason + "'" : "") + " by " + conn.closed.closed_by : null;
    var node = h("div", { class: "sub-sec" },
      count > 1 || index ? h("h4", { class: "conn-title" }, title) : h("div", { class: "difflegend" }, title),
      h("div", { class: "pair" },
        h("div", null, h("h4", null, "Client sent ", h("span", { class: "hint" }, sentHint)),
          conn.other_client ? notKept() : requestHead(sent, null, null, lostOnTheWay(conn.header_diff))),
        h("div", null, h("h4", null, (conn.tap ? "Your app received " : "Server received "), h("span", { class: "hint" }, "marked against what the client sent")),
          diffLegend(conn.header_diff, conn.line_diff), requestHead(conn.request, conn.header_diff, conn.line_diff))),
      h("div", { class: "pair", style: "margin-top:10px" },
        h("div", null, h("h4", null, (conn.tap ? "Your app answered " : "Server answered "), h("span", { class: "hint" }, conn.tap ? "through the recording tap" : "websockets' response")),
          responseHead(conn.response, "the server closed without answering")),
        h("div", null, h("h4", null, "Client received ", h("span", { class: "hint" }, "the response head that came back")),
          conn.other_client ? notKept() : responseHead(received, "no response came back"))),
      h("div", { class: "conn-meta" }, kv([
        ["server error", conn.error ? (conn.error.type + ": " + conn.error.text + (conn.error.cause ? " (" + conn.error.cause + ")" : "") +
          (conn.error.source === "app log" ? " (from your app's log)" : "")) : "none"],
        ["upgraded", yesno(conn.upgraded)],
        ["closed", closed],
        ["bytes received", conn.bytes_received],
        ["listener", conn.listener],
        ["correlation id", conn.cell],
        ["HTTP/2 stream", conn.http2_request ? "#" + conn.http2_request.stream +
          " of a cleartext HTTP/2 connection (the server read only its preface)" : null],
        ["attributed to this cell", conn.attributed === undefined ? null : yesno(conn.attributed)]
      ])),
      more("raw request head as received (" + (conn.raw_head || "").length + " characters)", conn.raw_head ? pre(conn.raw_head) : null));
    return node;
  }

  function wireSection(cell) {
    var client = cell.client || {};
    var sent = client.sent || null;
    var received = client.received || null;
    var s = section("Request and response");
    if (!cell.server.length) {
      add(s, h("div", { class: "pair" },
        h("div", null, h("h4", null, "Client sent"), sent ? requestHead(sent, null, null) : h("div", { class: "wire" }, h("div", { class: "none" }, "nothing (no request written)"))),
        h("div", null, h("h4", null, "Server received"), h("div", { class: "wire" }, h("div", { class: "none" }, "nothing reached the server for this cell")))));
      add(s, h("div", { class: "pair", style: "margin-top:10px" }, h("div"),
        h("div", null, h("h4", null, "Client received"), responseHead(received, "no response came back"))));
      return s;
    }
    var hint = client.kind === "browser" ?
      "as Chromium reported it (its header order, not the wire's)" : "request as written on the wire";
    cell.server.forEach(function (conn, i) {
      add(s, connection(conn, i, cell.server.length, conn.client_sent, conn.client_received,
        conn.other_client ? "another client of this cell (the halfway new client or the reconnection): " +
          "its request was not kept, so nothing is marked against it" : hint));
    });
    return s;
  }

  function appLogSection(cell) {
    if (!cell.app_log || !cell.app_log.length) return null;
    var text = cell.app_log.map(function (entry) {
      return "[" + entry.stream + (entry.attributed_by ? ", by " + entry.attributed_by : "") + "] " + entry.text;
    }).join("\n");
    return section("Your app logged", h("div", { class: "muted" },
      "its own lines for this cell, each with how it was tied to the cell"), pre(text));
  }

  function holdSection(client) {
    var hold = client && client.hold;
    if (!hold) return null;
    return section("Held connection", kv(Object.keys(hold).map(function (k) { return [k.replace(/_/g, " "), show(hold[k])]; })));
  }

  function lifecycleSection(cell) {
    var life = cell.client && cell.client.lifecycle, line = cell.timeline;
    if (!life || !line) return null;
    var bar = h("div", { class: "timeline", role: "img", "aria-label": "timeline of the event, messages and close" });
    line.marks.forEach(function (m) {
      var mark = h("span", { class: "tl tl-" + m.kind, title: m.label });
      mark.style.left = m.x + "%";
      add(bar, mark);
    });
    var event = life.event, again = life.reconnect, fresh = life.new_connection;
    return section("Lifecycle · " + event.cause, bar,
      h("div", { class: "muted tl-axis" }, line.start.toFixed(2) + " s … " + line.end.toFixed(2) + " s from the event · " +
        "event ▮ echoed ● lost ✕ close ▲ new client ◆ retry ○ back ▼ (hover for each)"),
      kv([
        ["how", event.how], ["source", event.source], ["assumption", event.assumption], ["detail", event.detail],
        ["documented", event.documented || null],
        ["as documented", life.as_documented === null || life.as_documented === undefined ? null :
          (life.as_documented ? "yes" : "no: the documentation says " + (event.documented_kept ? "kept" : "closed") +
            ", this run saw it " + (life.survived ? "kept" : "closed"))],
        ["outcome", life.survived ? "kept open " + life.watched + " s after the event" :
          "closed " + life.closed_after + " s after the event: code " + life.code + " " + show(life.reason || "") +
          ", by " + life.closed_by + ", close frame " + (life.close_frame_received ? "received" : "not received")],
        ["messages", life.sent + " sent, " + life.echoed + " echoed, lost: " + (life.lost.length ? life.lost.join(", ") : "none")],
        ["new client", fresh ? (fresh.opened ? "opened " : "refused (" + fresh.error + ") ") + fresh.at + " s after the event" : null],
        ["reconnected", again ? reconnected(again) : null],
        ["reconnect loop", again && again.policy ? again.policy : null],
        ["page sockets", again && again.sockets && again.sockets.length ? pre(again.sockets.map(pageSocket).join("\n")) : null]
      ]));
  }

  function reconnected(again) {
    var who = again.client === "chromium" ? "the Chromium page's loop: " : "websockets' connect(): ";
    return who + (again.back_after !== null ? again.back_after + " s after the close, " + again.attempts + " attempts" +
      (again.instance !== null ? ", on instance " + again.instance : "") : "not back: " + again.error);
  }

  function pageSocket(socket, number) {
    var text = "#" + number + " new WebSocket() at " + socket.started + " s";
    if (socket.opened !== null) text += ", opened " + socket.opened + " s" + (socket.instance !== null ? " on instance " + socket.instance : "");
    if (socket.closed !== null) text += ", closed " + socket.closed + " s: code " + socket.code + (socket.reason ? " '" + socket.reason + "'" : "") + ", wasClean " + socket.clean;
    if (socket.error) text += " (" + socket.error + ")";
    return text;
  }

  function faultSection(cell) {
    var faults = cell.client && cell.client.faults, line = cell.timeline;
    if (!faults || !faults.length || (cell.client.lifecycle)) return null;
    var bar = null;
    if (line) {
      bar = h("div", { class: "timeline", role: "img", "aria-label": "timeline of the faults and the close" });
      line.marks.forEach(function (m) {
        var mark = h("span", { class: "tl tl-" + m.kind, title: m.label });
        mark.style.left = m.x + "%";
        add(bar, mark);
      });
    }
    return section("Network faults", bar,
      line ? h("div", { class: "muted tl-axis" }, line.start.toFixed(2) + " s … " + line.end.toFixed(2) +
        " s from the first fault · on ▮ off ▯ close ▲ (hover for each)") : null,
      kv(faults.map(function (f) {
        var what = f.kind + " on " + f.hop + (f.port ? " (port " + f.port + ")" : "");
        var said = f.not_measured ? "not measured: " + f.not_measured :
          f.error ? "error: " + f.error :
          (f.closed_after !== null && f.closed_after !== undefined ? "the WebSocket ended " + f.closed_after + " s into it" : "the WebSocket outlived it") +
          (f.commands.length ? " · " + f.commands.join("; ") : "");
        return [what, said];
      })));
  }

  function clientSection(client, duration) {
    if (!client) return null;
    var close = client.close ? "code " + client.close.code + (client.close.reason ? " '" + client.close.reason + "'" : "") : null;
    var s = section("Client", kv([
      ["kind", client.kind], ["connected", yesno(client.connected)], ["upgraded", yesno(client.upgraded)],
      ["subprotocol", client.subprotocol], ["error", client.error], ["timed out", client.timed_out ? "yes" : null],
      ["close", close], ["cell duration", duration === undefined ? null : duration + " s"]
    ]));
    if (client.steps && client.steps.length) {
      var body = h("tbody");
      client.steps.forEach(function (step) {
        add(body, h("tr", { class: step.ok ? null : "notok" }, h("td", null, step.step),
          h("td", { class: "mono" }, step.argument === null || step.argument === undefined ? "" : show(step.argument)),
          h("td", { class: step.ok ? "ok" : "notok" }, step.ok ? "✓" : "✗"), h("td", { class: "mono" }, step.detail || "")));
      });
      add(s, h("div", { class: "sub-sec" }, h("table", { class: "grid" },
        h("thead", null, h("tr", null, h("th", null, "step"), h("th", null, "argument"), h("th", null, "ok"), h("th", null, "detail"))), body)));
    }
    return s;
  }

  function parameter(p) {
    if (!p || typeof p !== "object") return h("li", null, show(p));
    var values = Object.keys(p).filter(function (k) { return k !== "name" && k !== "source"; })
      .map(function (k) { return k + " " + show(p[k]); }).join(", ");
    return h("li", null, h("b", null, p.name || ""), values ? ": " + values : "", p.source ? h("div", { class: "muted" }, p.source) : null);
  }

  function topologySection(cell) {
    var t = DATA.topologies[cell.topology];
    if (!t) return null;
    var s = section("Topology · " + t.name, kv([
      ["title", t.title], ["proxy", t.proxy + (t.proxy_version ? " " + t.proxy_version : "")], ["platform", t.platform],
      ["status", t.status], ["detail", t.detail], ["endpoint", t.endpoint], ["summary", t.summary]
    ]));
    if (t.behaviours && t.behaviours.length) {
      add(s, more("behaviours (" + t.behaviours.length + ")", h("ul", { class: "plain" }, t.behaviours.map(function (b) { return h("li", null, b); }))));
    }
    if (t.parameters && t.parameters.length) {
      add(s, more("parameters (" + t.parameters.length + ")", h("ul", { class: "plain" }, t.parameters.map(parameter))));
    }
    if (cell.proxy_log && cell.proxy_log.length) {
      add(s, h("div", { class: "sub-sec" }, h("h4", null, "Proxy log lines for this cell"), pre(cell.proxy_log.join("\n"))));
    }
    if (t.config !== null && t.config !== undefined) {
      add(s, more(t.proxy + " config, as rendered for this run", pre(t.config)));
    }
    if (t.log_tail) add(s, more("proxy log tail", pre(t.log_tail), true));
    return s;
  }

  function scenarioSection(cell) {
    var sc = DATA.scenarios[cell.scenario];
    if (!sc) return null;
    return section("Scenario · " + sc.id, kv([
      ["title", sc.title], ["suite", sc.suite], ["tier", sc.tier === undefined ? null : show(sc.tier)], ["models", sc.models],
      ["description", sc.description], ["source", sc.source]
    ]), more("expectations as written", pre(JSON.stringify(sc.expect, null, 2)), true));
  }

  var selected = null;
  function open(index) {
    var cell = DATA.cells[index];
    if (!cell) return;
    var scenario = DATA.scenarios[cell.scenario] || {};
    var topology = DATA.topologies[cell.topology] || {};
    drillTitle.textContent = "";
    add(drillTitle, [
      h("div", { class: "where" }, h("span", { class: "badge o-" + cell.outcome.css }, h("span", { class: "sym" }, cell.outcome.symbol), " " + cell.outcome.label),
        cell.topology + " × " + cell.scenario + " → " + cell.summary),
      h("div", { class: "what" }, (scenario.title || "") + (topology.title ? " · through " + topology.title : ""))
    ]);
    drillBody.textContent = "";
    var diagnosis = diagnosisBox(cell);
    if (diagnosis) add(drillBody, section(cell.diagnosis ? "Diagnosis" : cell.outcome.label, diagnosis));
    add(drillBody, [
      section("Checks", checksTable(cell.checks) || h("div", { class: "muted" }, "no checks")),
      lifecycleSection(cell), faultSection(cell), holdSection(cell.client), wireSection(cell), appLogSection(cell), clientSection(cell.client, cell.duration),
      topologySection(cell), scenarioSection(cell)
    ]);
    drill.hidden = false;
    backdrop.hidden = false;
    drillBody.scrollTop = 0;
    if (selected) selected.classList.remove("selected");
    selected = matrix.querySelector('button[data-cell="' + index + '"]');
    if (selected) { selected = selected.parentNode; selected.classList.add("selected"); }
    var hash = "#cell=" + encodeURIComponent(cell.topology) + "/" + encodeURIComponent(cell.scenario);
    if (location.hash !== hash) history.replaceState(null, "", hash);
    document.getElementById("drill-close").focus();
  }
  function close() {
    drill.hidden = true;
    backdrop.hidden = true;
    if (location.hash) history.replaceState(null, "", location.pathname + location.search);
    if (selected) { var b = selected.querySelector("button"); if (b) b.focus(); }
  }

  matrix.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-cell]");
    if (button) open(Number(button.getAttribute("data-cell")));
  });
  document.getElementById("drill-close").addEventListener("click", close);
  backdrop.addEventListener("click", close);
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && !drill.hidden) close();
  });

  /* Highlights: a cause, a way of failing or a server error in the band marks its cells in the matrix. */
  var markStatus = document.getElementById("mark-status");
  var marked = null;
  function setMark(button) {
    var number = button ? button.getAttribute("data-mark") : "";
    var cells = number === "" || number === null ? null : DATA.marks[Number(number)];
    document.querySelectorAll(".mark-btn[aria-pressed]").forEach(function (b) { b.removeAttribute("aria-pressed"); });
    matrix.querySelectorAll("td.hit").forEach(function (td) { td.classList.remove("hit"); });
    marked = null;
    if (cells && button !== markedButton) {
      marked = {};
      cells.forEach(function (index) {
        marked[index] = true;
        var b = matrix.querySelector('button[data-cell="' + index + '"]');
        if (b) b.parentNode.classList.add("hit");
      });
      button.setAttribute("aria-pressed", "true");
      document.getElementById("mark-label").textContent = button.getAttribute("data-label") || "";
      document.getElementById("mark-count").textContent = cells.length + " cell" + (cells.length === 1 ? "" : "s");
      markedButton = button;
    } else {
      markedButton = null;
    }
    matrix.classList.toggle("marking", !!marked);
    markStatus.hidden = !marked;
    applyFilters();
    var first = marked && matrix.querySelector("td.hit");
    if (first && first.offsetParent !== null) first.scrollIntoView({ block: "nearest", inline: "nearest" });
  }
  var markedButton = null;
  document.querySelectorAll(".mark-btn[data-mark]").forEach(function (button) {
    button.addEventListener("click", function (event) {
      event.preventDefault(); /* inside a <summary>: highlight, do not fold */
      setMark(button);
    });
  });
  document.getElementById("mark-clear").addEventListener("click", function () { setMark(null); });

  /* Filters: suites and tiers hide scenario columns, topologies hide rows. */
  function checked(selector) {
    var values = {};
    document.querySelectorAll(selector).forEach(function (box) { if (box.checked) values[box.value] = true; });
    return values;
  }
  function applyFilters() {
    var suites = checked(".f-suite"), tiers = checked(".f-tier"), topologies = checked(".f-topology");
    var hasTiers = document.querySelector(".f-tier") !== null;
    var problems = document.getElementById("f-problems").checked;
    var onlyMarked = marked && document.getElementById("f-marked").checked;
    var rows = matrix.querySelectorAll("tbody tr[data-topology]");
    rows.forEach(function (tr) {
      var hide = !topologies[tr.getAttribute("data-topology")];
      if (onlyMarked && !tr.querySelector("td.hit")) hide = true;
      tr.hidden = hide;
    });
    var hiddenCols = {};
    matrix.querySelectorAll("thead th[data-scenario]").forEach(function (th) {
      var id = th.getAttribute("data-scenario");
      var hide = !suites[th.getAttribute("data-suite")];
      if (hasTiers && th.hasAttribute("data-tier") && !tiers[th.getAttribute("data-tier")]) hide = true;
      if (!hide && problems) {
        var anyProblem = false;
        rows.forEach(function (tr) {
          if (tr.hidden) return;
          var td = tr.querySelector('td[data-scenario="' + CSS.escape(id) + '"]');
          var outcome = td && td.getAttribute("data-outcome");
          if (outcome && outcome !== "pass") anyProblem = true;
        });
        if (!anyProblem) hide = true;
      }
      th.hidden = hide;
      if (hide) hiddenCols[id] = true;
    });
    var shown = 0;
    rows.forEach(function (tr) {
      tr.querySelectorAll("td[data-scenario]").forEach(function (td) {
        td.hidden = !!hiddenCols[td.getAttribute("data-scenario")];
      });
    });
    document.querySelectorAll(".key [data-scenario]").forEach(function (e) {
      e.hidden = !!hiddenCols[e.getAttribute("data-scenario")];
    });
    /* The suite header spans its visible columns; a group's heading goes with its last row. */
    matrix.querySelectorAll("thead th.suite-head").forEach(function (th) {
      var span = 0;
      matrix.querySelectorAll("thead th[data-scenario]").forEach(function (col) {
        if (!col.hidden && col.getAttribute("data-band") === th.getAttribute("data-band")) span++;
      });
      th.hidden = span === 0;
      th.colSpan = Math.max(span, 1);
    });
    matrix.querySelectorAll("thead th[data-scenario]").forEach(function (th) { if (!th.hidden) shown++; });
    matrix.querySelectorAll("tbody").forEach(function (body) {
      var head = body.querySelector("tr.group");
      var any = body.querySelector("tr[data-topology]:not([hidden])");
      if (head) {
        head.hidden = !any;
        head.firstElementChild.colSpan = shown + 1;
      }
    });
    var total = document.querySelectorAll(".f-topology").length;
    document.getElementById("topology-count").textContent = Object.keys(topologies).length + "/" + total;
  }
  document.querySelectorAll(".filters input, #f-marked").forEach(function (box) {
    box.addEventListener("change", applyFilters);
  });
  function setAll(value) {
    document.querySelectorAll(".f-topology").forEach(function (box) { box.checked = value; });
    applyFilters();
  }
  document.getElementById("topologies-all").addEventListener("click", function () { setAll(true); });
  document.getElementById("topologies-none").addEventListener("click", function () { setAll(false); });
  applyFilters();

  /* A link to #cell=<topology>/<scenario> opens that cell. */
  var match = /^#cell=([^/]+)\/(.+)$/.exec(location.hash);
  if (match) {
    var t = decodeURIComponent(match[1]), s = decodeURIComponent(match[2]);
    DATA.cells.forEach(function (cell, i) { if (cell.topology === t && cell.scenario === s) open(i); });
  }
})();
