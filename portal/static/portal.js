/* QRM Cloud portal: small enhancements. Every page works without this file. */
(function () {
  "use strict";

  // Controls only needed without script (the language "Change" button, "Show price").
  document.querySelectorAll("[data-hide-with-script]").forEach(function (element) {
    element.hidden = true;
  });

  // The language switch applies as soon as a language is picked.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });

  // Ask before irreversible actions.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });

  // The request form: the price of the current choices, asked from the server.
  var form = document.getElementById("request-form");
  if (!form || !window.fetch) { return; }
  var url = form.getAttribute("data-quote-url");
  var errorLine = form.querySelector("[data-price-error]");
  var timer = null;
  var latest = 0;

  function show(values) {
    form.querySelectorAll("[data-price]").forEach(function (element) {
      var key = element.getAttribute("data-price");
      element.textContent = values ? values[key] : "—";
    });
  }

  function update() {
    var params = new URLSearchParams();
    new FormData(form).forEach(function (value, key) {
      if (key !== "csrf_token" && key !== "action") { params.append(key, value); }
    });
    var ticket = ++latest;
    fetch(url + "?" + params.toString(), {headers: {"Accept": "application/json"}, credentials: "same-origin"})
      .then(function (response) { return response.json(); })
      .then(function (data) {
        if (ticket !== latest) { return; }
        if (data.error) {
          show(null);
          errorLine.textContent = data.error;
          errorLine.hidden = false;
        } else {
          show(data.text);
          errorLine.hidden = true;
        }
      })
      .catch(function () { /* keep the last price; the server checks again on submit */ });
  }

  form.addEventListener("change", function () {
    window.clearTimeout(timer);
    timer = window.setTimeout(update, 150);
  });
  form.addEventListener("input", function (event) {
    if (event.target.type === "number") {
      window.clearTimeout(timer);
      timer = window.setTimeout(update, 400);
    }
  });
}());
