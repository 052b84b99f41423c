// Sortable tables, shared by the dashboard and the HTML report (inlined there). Click a header to sort by it;
// click again to reverse. Cells sort by their data-v attribute: numerically when both values are numbers. A header
// with data-first="descending" sorts high to low on its first click (a figure where higher is better).
(function () {
  "use strict";
  function key(td) {
    var v = td ? td.getAttribute("data-v") : "";
    if (v === null) v = td.textContent;
    var n = Number(v);
    return v.trim() !== "" && isFinite(n) ? n : v.toLowerCase();
  }
  function compare(a, b) {
    var an = typeof a === "number", bn = typeof b === "number";
    if (a === "" && b !== "") return 1;  // empty cells last, whichever the direction
    if (b === "" && a !== "") return -1;
    if (an && bn) return a - b;
    if (an !== bn) return an ? -1 : 1;
    return a < b ? -1 : a > b ? 1 : 0;
  }
  function sortBy(table, col, dir) {
    var tbody = table.tBodies[0];
    var rows = Array.prototype.slice.call(tbody.rows);
    rows.sort(function (r1, r2) {
      var a = key(r1.cells[col]), b = key(r2.cells[col]);
      if (a === "" || b === "") return compare(a, b);
      return dir * compare(a, b);
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      if (i === col) th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    });
    table.setAttribute("data-sort", col + ":" + dir);
  }
  function makeSortable(table) {
    if (table.getAttribute("data-sortable-ready")) return;
    table.setAttribute("data-sortable-ready", "1");
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.addEventListener("click", function () {
        var cur = th.getAttribute("aria-sort");
        var first = th.getAttribute("data-first") === "descending" ? -1 : 1;
        sortBy(table, i, cur === null ? first : cur === "ascending" ? -1 : 1);
      });
    });
  }
  // Re-apply a table's sort after its rows were replaced (the dashboard redraws them every poll).
  function resort(table) {
    var s = table.getAttribute("data-sort");
    if (s) { var p = s.split(":"); sortBy(table, +p[0], +p[1]); }
  }
  window.SortableTable = { make: makeSortable, sort: sortBy, resort: resort };
  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), makeSortable);
  });
})();
