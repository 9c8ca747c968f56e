/* harness report: sortable tables and table filters. Vanilla JavaScript, nothing fetched: works from file://.
 *
 * Sorting: every <table class="sortable">; click (or Enter/Space on) a header <th data-sort="number|text">
 * to sort its rows ascending, again to reverse; aria-sort and the arrow (.sort-arrow) show the direction.
 * A cell sorts by its data-value attribute when it has one, else by its text; empty cells and "–" go last.
 * Filtering: controls with class "table-filter" and data-table="<table id>": a text <input> keeps the rows
 * whose text contains it (case-insensitive); a <select data-column="c"> keeps the rows whose data-c equals
 * its value ("" = all). The element with id "<table id>-count" says how many rows are shown.
 * Collapsed columns: the columns of a table marked <col class="detail"> (in its <colgroup>) are hidden until the
 * button put above the table (class "column-toggle", naming them) shows them; clicked again, it hides them.
 */
(function () {
  "use strict";

  function sortKey(row, index, numeric) {
    var cell = row.cells[index];
    if (!cell) { return null; }
    var raw = cell.hasAttribute("data-value") ? cell.getAttribute("data-value") : cell.textContent;
    raw = raw.trim();
    if (raw === "" || raw === "–") { return null; }
    if (numeric) {
      var value = parseFloat(raw);
      return isNaN(value) ? null : value;
    }
    return raw.toLowerCase();
  }

  function sortTable(table, th) {
    var index = th.cellIndex;
    var numeric = th.getAttribute("data-sort") === "number";
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var body = table.tBodies[0];
    if (!body) { return; }
    var keyed = Array.prototype.map.call(body.rows, function (row, i) {
      return { row: row, key: sortKey(row, index, numeric), i: i };
    });
    keyed.sort(function (a, b) {
      if (a.key === null || b.key === null) {
        return a.key === b.key ? a.i - b.i : (a.key === null ? 1 : -1);
      }
      var c = numeric ? a.key - b.key : a.key.localeCompare(b.key, undefined, { numeric: true });
      return (ascending ? c : -c) || a.i - b.i;
    });
    var fragment = document.createDocumentFragment();
    keyed.forEach(function (k) { fragment.appendChild(k.row); });
    body.appendChild(fragment);
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (other) {
      if (other.hasAttribute("aria-sort")) { other.setAttribute("aria-sort", "none"); }
      var arrow = other.querySelector(".sort-arrow");
      if (arrow) { arrow.textContent = ""; }
    });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var mine = th.querySelector(".sort-arrow");
    if (mine) { mine.textContent = ascending ? " \u25B2" : " \u25BC"; }
  }

  function applyFilters(tableId) {
    var table = document.getElementById(tableId);
    if (!table || !table.tBodies[0]) { return; }
    var text = "";
    var columns = [];
    document.querySelectorAll(".table-filter").forEach(function (control) {
      if (control.getAttribute("data-table") !== tableId) { return; }
      if (control.tagName === "SELECT") {
        if (control.value) { columns.push([control.getAttribute("data-column"), control.value]); }
      } else {
        text = control.value.trim().toLowerCase();
      }
    });
    var rows = table.tBodies[0].rows;
    var shown = 0;
    for (var i = 0; i < rows.length; i++) {
      var row = rows[i];
      if (row.filterText === undefined) { row.filterText = row.textContent.toLowerCase(); }
      var keep = text === "" || row.filterText.indexOf(text) !== -1;
      for (var j = 0; keep && j < columns.length; j++) {
        keep = row.getAttribute("data-" + columns[j][0]) === columns[j][1];
      }
      row.hidden = !keep;
      if (keep) { shown++; }
    }
    var count = document.getElementById(tableId + "-count");
    if (count) { count.textContent = shown + " of " + rows.length + " rows"; }
  }

  function detailIndexes(table) {
    var indexes = [];
    var index = 0;
    table.querySelectorAll("colgroup > col").forEach(function (col) {
      for (var k = 0; k < (col.span || 1); k++, index++) {
        if (col.classList.contains("detail")) { indexes.push(index); }
      }
    });
    return indexes;
  }

  function collapseColumns(table) {
    var indexes = detailIndexes(table);
    if (!indexes.length || !table.tHead) { return; }
    Array.prototype.forEach.call(table.rows, function (row) {
      indexes.forEach(function (i) { if (row.cells[i]) { row.cells[i].classList.add("detail"); } });
    });
    var names = indexes.map(function (i) { return table.tHead.rows[0].cells[i].textContent.trim(); });
    var button = document.createElement("button");
    button.type = "button";
    button.className = "column-toggle";
    if (table.id) { button.setAttribute("aria-controls", table.id); }
    function show(expanded) {
      table.classList.toggle("collapsed", !expanded);
      button.setAttribute("aria-expanded", String(expanded));
      var columns = " column" + (names.length > 1 ? "s" : "") + ": " + names.join(", ");
      button.textContent = expanded ? "Hide " + names.length + columns : "Show " + names.length + " more" + columns;
    }
    button.addEventListener("click", function () { show(table.classList.contains("collapsed")); });
    var box = table.parentNode.classList.contains("table-scroll") ? table.parentNode : table;
    box.parentNode.insertBefore(button, box);
    show(false);
  }

  document.querySelectorAll("table").forEach(collapseColumns);
  document.querySelectorAll("table.sortable").forEach(function (table) {
    if (!table.tHead) { return; }
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      if (!th.hasAttribute("data-sort")) { return; }
      th.addEventListener("click", function () { sortTable(table, th); });
      th.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sortTable(table, th); }
      });
    });
  });
  var filtered = {};
  document.querySelectorAll(".table-filter").forEach(function (control) {
    var tableId = control.getAttribute("data-table");
    filtered[tableId] = true;
    control.addEventListener(control.tagName === "SELECT" ? "change" : "input", function () { applyFilters(tableId); });
  });
  Object.keys(filtered).forEach(applyFilters);  // values a browser restored on "back"
}());
