// Refresh the front-desk queue every minute without a reload: fetch the same address with
// X-Background-Refresh (so the idle timer is not reset) and swap in the new rows, count and
// pager. Skipped while the user is typing, has ticked leads, or has focus inside the table.
(function () {
  "use strict";
  var EVERY_MS = 60 * 1000;
  var body = document.getElementById("queue-rows");
  if (!body || !window.fetch || !window.DOMParser) { return; }

  function busy() {
    var active = document.activeElement;
    if (active && active !== document.body && (active.closest("#queue-rows") || active.closest("form"))) { return true; }
    return document.querySelector('#queue-rows input[type="checkbox"]:checked') !== null;
  }

  function swap(doc, id) {
    var fresh = doc.getElementById(id);
    var here = document.getElementById(id);
    if (fresh && here) { here.innerHTML = fresh.innerHTML; }
  }

  function refresh() {
    if (document.hidden || busy()) { return; }
    fetch(window.location.href, {
      credentials: "same-origin",
      headers: { "X-Background-Refresh": "1" },
      redirect: "manual"
    }).then(function (response) {
      if (!response.ok) { return null; }  // signed out or an error: leave the page as it is
      return response.text();
    }).then(function (html) {
      if (!html) { return; }
      var doc = new DOMParser().parseFromString(html, "text/html");
      if (!doc.getElementById("queue-rows")) { return; }
      swap(doc, "queue-rows");
      swap(doc, "queue-count");
      swap(doc, "queue-pager");
    }).catch(function () { /* offline for a moment: try again next minute */ });
  }

  window.setInterval(refresh, EVERY_MS);
}());
