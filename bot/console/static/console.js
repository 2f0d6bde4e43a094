// Progressive enhancement only: every page works without this file.
// - [data-print] buttons print the page (shown only when this script runs);
// - [data-live] elements refresh their numbers from a JSON URL every few seconds.
(function () {
  document.querySelectorAll("[data-print]").forEach(function (b) {
    b.hidden = false;
    b.addEventListener("click", function () { window.print(); });
  });
  document.querySelectorAll("[data-live]").forEach(function (box) {
    var url = box.getAttribute("data-live");
    function refresh() {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (!data) { return; }
          Object.keys(data).forEach(function (key) {
            box.querySelectorAll('[data-count="' + key + '"]').forEach(function (cell) {
              cell.textContent = String(data[key]);
            });
          });
        })
        .catch(function () {});
    }
    setInterval(refresh, 3000);
  });
})();
