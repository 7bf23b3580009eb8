// The audit log's live tail: rows from /audit/tail (server-sent events) go on top of
// the table; paused, they wait and the count of waiting rows is shown. No HTML is
// taken from the server: each cell is set as text.
(function () {
  "use strict";
  var source = null;

  function cell(tr, text) {
    var td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    tr.appendChild(td);
    return td;
  }

  function rowOf(r) {
    var tr = document.createElement("tr");
    tr.className = "event live-row result-" + r.result;
    tr.dataset.eventId = r.event_id;
    var first = cell(tr, "");
    var a = document.createElement("a");
    a.href = "/events/" + encodeURIComponent(r.event_id);
    a.textContent = r.time;
    first.appendChild(a);
    cell(tr, r.user).title = r.actor;
    cell(tr, r.operation ? r.action + " (" + r.operation + ")" : r.action);
    cell(tr, (r.subjects || []).join(", "));
    cell(tr, r.error ? r.result + ": " + r.error : r.result);
    cell(tr, r.source);
    cell(tr, r.cluster);
    return tr;
  }

  function start(section) {
    if (section.dataset.started) return;
    section.dataset.started = "1";
    if (source) source.close();
    var body = document.querySelector("#audit-rows tbody");
    var toggle = document.getElementById("live-toggle");
    var stateText = document.getElementById("live-state");
    var waitingText = document.getElementById("live-waiting");
    var waiting = [];
    var paused = false;

    function show(rows) {
      var empty = body.querySelector("tr.empty");
      if (empty) empty.remove();
      rows.forEach(function (r) { body.insertBefore(rowOf(r), body.firstChild); });
    }

    function count() {
      waitingText.hidden = waiting.length === 0;
      waitingText.textContent = waiting.length + " new event" + (waiting.length === 1 ? "" : "s") + " waiting";
    }

    toggle.addEventListener("click", function () {
      paused = !paused;
      toggle.setAttribute("aria-pressed", paused ? "true" : "false");
      toggle.textContent = paused ? "Resume live tail" : "Pause live tail";
      stateText.textContent = paused ? "Paused." : "Live: new events appear at the top.";
      if (!paused) { show(waiting); waiting = []; }
      count();
    });

    source = new EventSource(section.dataset.tail);
    source.addEventListener("row", function (e) {
      var r = JSON.parse(e.data);
      if (paused) { waiting.push(r); count(); } else { show([r]); }
    });
    source.addEventListener("end", function (e) {
      source.close();
      source = null;
      stateText.textContent = "Live tail stopped: " + e.data + ". Log in again to follow the log.";
    });
    source.onerror = function () { stateText.textContent = "Live tail interrupted; reconnecting…"; };
    source.onopen = function () { if (!paused) stateText.textContent = "Live: new events appear at the top."; };
  }

  function scan() {
    var section = document.getElementById("live");
    if (section) { start(section); } else if (source) { source.close(); source = null; }
  }

  document.addEventListener("DOMContentLoaded", scan);
  document.addEventListener("htmx:load", scan);
  document.addEventListener("htmx:beforeSwap", function () { if (source) { source.close(); source = null; } });
})();
