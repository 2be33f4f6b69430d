// New-lead page: warn "Already a lead" while the phone is typed (POST, so no phone in a URL).
(function () {
  "use strict";
  var form = document.getElementById("new-lead");
  var phone = document.getElementById("phone");
  var box = document.getElementById("phone-matches");
  if (!form || !phone || !box) { return; }
  var token = form.querySelector("input[name=csrf_token]");
  var timer = null;
  var last = "";

  function show(matches) {
    box.textContent = "";
    if (!matches.length) { box.hidden = true; return; }
    box.appendChild(document.createTextNode("Already a lead: "));
    matches.forEach(function (m, i) {
      if (i) { box.appendChild(document.createTextNode(", ")); }
      var a = document.createElement("a");
      a.href = m.url;
      a.textContent = m.name + " (#" + m.id + ")";
      box.appendChild(a);
    });
    box.hidden = false;
  }

  function lookup() {
    var value = phone.value.trim();
    if (value.replace(/\D/g, "").length < 10 || value === last) { if (!value) { show([]); } return; }
    last = value;
    var body = new URLSearchParams();
    body.set("phone", value);
    fetch(form.getAttribute("data-lookup-url"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": token ? token.value : "" },
      body: body
    }).then(function (r) { return r.ok ? r.json() : { matches: [] }; })
      .then(function (data) { show(data.matches || []); })
      .catch(function () { show([]); });
  }

  phone.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(lookup, 300);
  });
  phone.addEventListener("blur", lookup);
})();
