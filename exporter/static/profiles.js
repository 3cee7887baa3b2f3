/* The profile edit page. Every action is a plain form POST that works without this file;
   here the Export Type select re-renders its settings at once, + and Edit open the mapping
   dialog in place, and the preview is fetched again when the page comes back from history. */
(function () {
  "use strict";

  var general = document.getElementById("general-form");
  var typeSelect = general && general.elements.export_type;
  if (typeSelect) {
    typeSelect.addEventListener("change", function () {
      var flag = document.createElement("input");
      flag.type = "hidden";
      flag.name = "refresh_type";
      flag.value = "1";
      general.appendChild(flag);
      general.submit();
    });
  }

  var dialog = document.getElementById("mapping-dialog");
  var form = document.getElementById("mapping-form");
  var FIELDS = ["export_name", "field", "static_value", "format", "format_arg", "default_value"];

  function syncStatic() {
    var box = document.getElementById("field-static_value");
    if (box && form.elements.field) box.hidden = form.elements.field.value !== "static";
  }

  if (dialog && form && typeof dialog.showModal === "function") {
    document.querySelectorAll("[data-mapping-dialog]").forEach(function (link) {
      link.addEventListener("click", function (event) {
        event.preventDefault();
        var values = link.dataset.values ? JSON.parse(link.dataset.values) : {};
        FIELDS.forEach(function (name) {
          var input = form.elements[name];
          if (!input) return;
          var value = values[name] || "";
          if (input.tagName === "SELECT" && !value) input.selectedIndex = 0;
          else input.value = value;
        });
        form.action = link.dataset.action;
        document.getElementById("mapping-dialog-title").textContent =
          link.dataset.values ? "Edit field mapping" : "Add field mapping";
        form.querySelectorAll(".error").forEach(function (e) { e.remove(); });
        form.querySelectorAll(".has-error").forEach(function (e) { e.classList.remove("has-error"); });
        syncStatic();
        if (dialog.open) dialog.close();
        dialog.showModal();
        form.elements.export_name.focus();
      });
    });
    document.querySelectorAll("[data-close-dialog]").forEach(function (link) {
      link.addEventListener("click", function (event) {
        if (dialog.open) {
          event.preventDefault();
          dialog.close();
        }
      });
    });
    if (form.elements.field) form.elements.field.addEventListener("change", syncStatic);
    syncStatic();
  }

  var preview = document.getElementById("preview");
  var problem = document.getElementById("preview-problem");
  function refreshPreview() {
    fetch(preview.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) return;
        preview.textContent = data.preview || "";
        preview.hidden = data.preview === null;
        problem.textContent = data.problem || "";
        problem.hidden = !data.problem;
      })
      .catch(function () { /* the server-rendered preview stays */ });
  }
  if (preview && problem) {
    window.addEventListener("pageshow", function (event) { if (event.persisted) refreshPreview(); });
  }
})();
