// Live parts of console pages: an element with data-live="<url>" is replaced by each `view`
// event of that event stream; `done` and `expired` end the stream.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-live]").forEach(function (target) {
    var source = new EventSource(target.getAttribute("data-live"));
    source.addEventListener("view", function (e) {
      target.innerHTML = e.data;
      target.setAttribute("data-updated", String(Date.now()));
    });
    source.addEventListener("done", function () { source.close(); });
    source.addEventListener("expired", function (e) {
      source.close();
      var note = document.createElement("p");
      note.className = "alert";
      note.setAttribute("role", "alert");
      note.id = "link-expired";
      note.textContent = e.data;
      target.prepend(note);
    });
  });
});
