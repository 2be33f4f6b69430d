// Draw the dashboard's plotly figures. Each chart's figure is JSON in a
// <script type="application/json" id="fig-…"> next to a <div data-figure="fig-…">;
// nothing here is inline, so the content security policy stays strict.
(function () {
  "use strict";
  if (!window.Plotly) { return; }
  var config = { displaylogo: false, modeBarButtonsToRemove: ["select2d", "lasso2d"] };
  var plots = document.querySelectorAll("[data-figure]");
  Array.prototype.forEach.call(plots, function (el) {
    var source = document.getElementById(el.getAttribute("data-figure"));
    if (!source) { return; }
    var fig = JSON.parse(source.textContent);
    window.Plotly.newPlot(el, fig.data, fig.layout, config);
  });
  // The custom dates only mean something with the "Custom" preset: choosing a date picks it.
  var range = document.getElementById("range");
  ["from", "to"].forEach(function (id) {
    var input = document.getElementById(id);
    if (input && range) {
      input.addEventListener("change", function () { range.value = "custom"; });
    }
  });
}());
