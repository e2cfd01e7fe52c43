/* The health grid's live updates: server-sent events from /events/health.
 *
 * Each "rows" event carries {"version": n, "rows": {service: "<tr>...</tr>"},
 * "summary": "<p>...</p>"}: rows rendered by the server with the same partial as the page
 * (escaped there), swapped in place by id. EventSource reconnects by itself and sends
 * Last-Event-ID; the server then sends whatever changed since (or every row).
 */
(function () {
  "use strict";
  const grid = document.querySelector("[data-health-grid]");
  if (!grid || !window.EventSource) return;
  const live = document.getElementById("live");

  function setLive(state) { if (live) live.dataset.state = state; }

  function fragment(html) {
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content.firstElementChild;
  }

  function apply(payload) {
    const body = grid.tBodies[0];
    Object.keys(payload.rows || {}).forEach(function (service) {
      const row = fragment(payload.rows[service]);
      if (!row) return;
      const old = document.getElementById("svc-" + service);
      if (old) old.replaceWith(row); else body.appendChild(row);
      const empty = body.querySelector("tr.empty");
      if (empty) empty.remove();
      if (window.Junction && window.Junction.charts) window.Junction.charts.draw(row);
    });
    if (payload.summary) {
      const summary = document.getElementById("health-summary");
      const fresh = fragment(payload.summary);
      if (summary && fresh) summary.replaceWith(fresh);
    }
    grid.dataset.version = String(payload.version);
    filter();
  }

  // Filtering, in the browser: by name (the search box) and by status (a summary badge;
  // clicking it again shows all). Hidden rows' sparklines are drawn when shown.
  const search = document.getElementById("grid-filter");
  let query = "";
  let status = "";
  function filter() {
    grid.tBodies[0].querySelectorAll("tr[data-service]").forEach(function (row) {
      const name = (row.dataset.service || "").toLowerCase();
      row.hidden = (query !== "" && name.indexOf(query) < 0) ||
                   (status !== "" && row.dataset.status !== status);
    });
    document.querySelectorAll("[data-filter-status]").forEach(function (button) {
      button.classList.toggle("on", button.dataset.filterStatus === status);
      button.setAttribute("aria-pressed", String(button.dataset.filterStatus === status));
    });
  }
  if (search) {
    search.addEventListener("input", function () {
      query = search.value.trim().toLowerCase();
      filter();
    });
  }
  document.addEventListener("click", function (event) {
    const button = event.target.closest ? event.target.closest("[data-filter-status]") : null;
    if (!button) return;
    status = status === button.dataset.filterStatus ? "" : button.dataset.filterStatus;
    filter();
  });

  let source = null;
  function connect(url) {
    source = new EventSource(url);
    source.addEventListener("open", function () { setLive("live"); });
    source.addEventListener("error", function () {
      if (source.readyState !== EventSource.CLOSED) { setLive("connecting"); return; }
      // Refused (401 after a logout, 503 when too many streams): try again later.
      setLive("offline");
      setTimeout(function () {
        connect("/events/health?after=" + encodeURIComponent(grid.dataset.version || ""));
      }, 10000);
    });
    source.addEventListener("rows", function (event) {
      setLive("live");
      try { apply(JSON.parse(event.data)); } catch (e) { /* a bad event: keep the page */ }
    });
  }
  connect(grid.dataset.events);
  window.addEventListener("pagehide", function () { if (source) source.close(); });
})();
