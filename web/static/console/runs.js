// Keeps a trigger's run history current: every 10 s, while the tab is visible, fetch this
// page again and swap in its runs section (table and chart). Without scripts, reload.
(function () {
  "use strict";
  var section = document.getElementById("runs-section");
  if (!section || !window.fetch || !window.DOMParser) { return; }
  var note = section.querySelector("[data-live-note]");
  if (note) { note.hidden = false; }

  function refresh() {
    if (document.hidden) { return; }
    fetch(window.location.href, {credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (response) { return response.ok && !response.redirected ? response.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("runs-section");
        var current = document.getElementById("runs-section");
        if (fresh && current) {
          var freshNote = fresh.querySelector("[data-live-note]");
          if (freshNote) { freshNote.hidden = false; }
          current.replaceWith(document.importNode(fresh, true));
        }
      })
      .catch(function () {});
  }
  window.setInterval(refresh, 10000);
}());
