(function () {
  "use strict";
  var doc = document, body = doc.body;
  doc.documentElement.className = doc.documentElement.className.replace("no-js", "js");
  var data = {};
  try { data = JSON.parse(doc.getElementById("report-data").textContent || "{}"); } catch (e) { data = {}; }

  // Charts are drawn server-side as SVG; record how many actually laid out (the browser test reads it).
  var drawn = 0;
  Array.prototype.forEach.call(doc.querySelectorAll("svg.chart"), function (svg) {
    var box = svg.getBoundingClientRect();
    if (box.width > 0 && box.height > 0 && svg.querySelector("path, rect")) { drawn += 1; }
  });
  body.setAttribute("data-charts-drawn", String(drawn));
  // How wide the page lays out against the window (the browser test checks that a phone never scrolls sideways).
  body.setAttribute("data-page-width", String(doc.documentElement.scrollWidth));
  body.setAttribute("data-window-width", String(window.innerWidth));

  var rows = Array.prototype.slice.call(doc.querySelectorAll("tr[data-sev]"));
  var sections = Array.prototype.slice.call(doc.querySelectorAll("section[data-kind]"));
  var chips = Array.prototype.slice.call(doc.querySelectorAll("[data-filter-sev]"));
  var kindSelect = doc.getElementById("kind-filter");
  var text = doc.getElementById("text-filter");
  var status = doc.getElementById("filter-status");
  // What the filter matches: the row's text, and the ids and SKU part numbers it stands for (data-search).
  var texts = rows.map(function (r) {
    return ((r.textContent || "") + " " + (r.getAttribute("data-search") || "")).toLowerCase();
  });

  function active() {
    var on = {};
    chips.forEach(function (c) { if (c.getAttribute("aria-pressed") === "true") { on[c.getAttribute("data-filter-sev")] = true; } });
    return on;
  }

  function apply() {
    var sev = active(), kind = kindSelect ? kindSelect.value : "", q = text ? text.value.trim().toLowerCase() : "";
    var shown = 0, perKind = {};
    rows.forEach(function (r, i) {
      var ok = sev[r.getAttribute("data-sev")] && (!kind || r.getAttribute("data-kind") === kind) &&
        (!q || texts[i].indexOf(q) !== -1);
      r.hidden = !ok;
      if (ok) { shown += 1; perKind[r.getAttribute("data-kind")] = true; }
    });
    sections.forEach(function (s) { s.hidden = !perKind[s.getAttribute("data-kind")]; });
    var none = doc.getElementById("no-match");
    if (none) { none.hidden = shown > 0 || rows.length === 0; }
    if (status) {
      var msg = "Showing " + shown.toLocaleString() + " of " + rows.length.toLocaleString() + " listed findings";
      if (data.total > data.rendered) { msg += " (" + data.total.toLocaleString() + " in total; the JSON/CSV have all)"; }
      status.textContent = msg;
    }
    body.setAttribute("data-findings-visible", String(shown));
  }

  function fromHash() {
    // #sev=critical,warning&kind=b2b_member&q=text preselects the filters (links from alerts, tests).
    var params = {};
    (location.hash || "").replace(/^#/, "").split("&").forEach(function (part) {
      var i = part.indexOf("=");
      if (i > 0) { params[decodeURIComponent(part.slice(0, i))] = decodeURIComponent(part.slice(i + 1)); }
    });
    if (params.sev) {
      var want = params.sev.split(",");
      chips.forEach(function (c) { c.setAttribute("aria-pressed", want.indexOf(c.getAttribute("data-filter-sev")) !== -1 ? "true" : "false"); });
    }
    if (params.kind && kindSelect) { kindSelect.value = params.kind; }
    if (params.q && text) { text.value = params.q; }
  }

  chips.forEach(function (c) {
    c.addEventListener("click", function () {
      // With every severity shown, a click means "only this one" (what an admin expects of "critical"); after
      // that, clicks add or remove severities, and removing the last one shows them all again.
      var on = active(), count = Object.keys(on).length;
      if (count === chips.length) {
        chips.forEach(function (o) { o.setAttribute("aria-pressed", o === c ? "true" : "false"); });
      } else {
        c.setAttribute("aria-pressed", on[c.getAttribute("data-filter-sev")] ? "false" : "true");
        if (Object.keys(active()).length === 0) {
          chips.forEach(function (o) { o.setAttribute("aria-pressed", "true"); });
        }
      }
      apply();
    });
  });
  if (kindSelect) { kindSelect.addEventListener("change", apply); }
  if (text) { text.addEventListener("input", apply); }
  fromHash();
  apply();
  body.setAttribute("data-js", "ready");
})();
