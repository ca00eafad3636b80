// Live preview of the trigger form's schedule: posts the form (with its CSRF token) to
// /console/preview while typing and shows the description and next fires. Without
// scripts the form's "Preview" button does the same through a normal submit.
(function () {
  "use strict";
  var form = document.getElementById("trigger-form");
  var box = document.getElementById("preview");
  if (!form || !box || !window.fetch) { return; }
  var timer = null;
  var watched = ["cron", "run_at", "interval_seconds", "anchor_at", "jitter_seconds", "timezone",
                 "start_at", "end_at", "schedule_kind"];

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text) { node.textContent = text; }
    if (cls) { node.className = cls; }
    return node;
  }

  function show(data) {
    var button = box.querySelector("button");
    box.textContent = "";
    box.appendChild(el("h2", "Preview"));
    if (data.errors) {
      var names = Object.keys(data.errors).sort();
      box.appendChild(el("p", names.map(function (n) { return n + ": " + data.errors[n]; }).join("; "), "field-error"));
    } else {
      var p = el("p"); p.appendChild(el("strong", data.description)); box.appendChild(p);
      var list = el("ol");
      data.fires.forEach(function (fire) {
        var item = el("li", fire.local + " (" + fire.utc + ")");
        if (fire.jittered_local) { item.appendChild(document.createTextNode(" ")); item.appendChild(el("span", "due with jitter " + fire.jittered_local, "jittered")); }
        if (fire.change) { item.appendChild(document.createTextNode(" ")); item.appendChild(el("strong", "DST change: " + fire.change, "dst")); }
        list.appendChild(item);
      });
      if (!data.fires.length) { list.appendChild(el("li", "No more fires.")); }
      box.appendChild(list);
    }
    if (button) { box.appendChild(button); }
  }

  function refresh() {
    var body = new URLSearchParams(new FormData(form));
    body.delete("intent");
    fetch(form.dataset.previewUrl, {
      method: "POST", body: body, credentials: "same-origin",
      headers: {"Accept": "application/json"}
    }).then(function (response) {
      if (response.status !== 200 && response.status !== 422) { return null; }
      return response.json();
    }).then(function (data) { if (data) { show(data); } }).catch(function () {});
  }

  form.addEventListener("input", function (event) {
    if (watched.indexOf(event.target.name) === -1) { return; }
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, 300);
  });
  form.addEventListener("change", function (event) {
    if (event.target.name === "schedule_kind") { refresh(); }
  });
  if (form.elements.cron && (form.elements.cron.value || form.elements.run_at.value ||
      form.elements.interval_seconds.value)) { refresh(); }
}());
