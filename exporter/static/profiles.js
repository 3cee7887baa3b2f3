/* The profile edit page. Every action is a plain form POST that works without this file;
   here the Export Type select re-renders its settings at once, + and Edit open the mapping
   dialog in place, and the preview follows the unsaved form as the admin types. */
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

  /* Static Value only for Static; Format pattern only for a format that takes one. */
  function syncFields() {
    if (!form) return;
    var box = document.getElementById("field-static_value");
    if (box && form.elements.field) box.hidden = form.elements.field.value !== "static";
    var patterns = (form.dataset.patterns || "").split(" ");
    var pattern = document.getElementById("field-format_arg");
    if (pattern && form.elements.format) pattern.hidden = patterns.indexOf(form.elements.format.value) < 0;
  }

  /* Search in the Field list: options whose key or description hold every word typed stay; the
     first of them is chosen when the chosen one is filtered out. */
  var search = document.getElementById("field_search");
  if (search && form && form.elements.field) {
    var select = form.elements.field;
    var count = document.getElementById("field-search-count");
    document.getElementById("field-field_search").hidden = false;
    search.addEventListener("keydown", function (event) {
      if (event.key === "Enter") event.preventDefault();  // Enter picks, it does not save the dialog
    });
    search.addEventListener("input", function () {
      var words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
      var shown = 0, first = null;
      Array.prototype.forEach.call(select.options, function (option) {
        var text = (option.value + " " + option.text).toLowerCase();
        var keep = words.every(function (word) { return text.indexOf(word) >= 0; });
        option.hidden = !keep;
        option.disabled = !keep;
        if (keep) { shown += 1; if (!first) first = option; }
      });
      if (first && select.selectedOptions[0] && select.selectedOptions[0].hidden) {
        select.value = first.value;
        select.dispatchEvent(new Event("change", {bubbles: true}));
      }
      count.textContent = words.length ? (shown === 1 ? "1 field matches" : shown + " fields match") : "";
    });
  }

  var preview = document.getElementById("preview");
  var problem = document.getElementById("preview-problem");

  function show(data) {
    if (!data) return;
    preview.textContent = data.preview || "";
    preview.hidden = data.preview === null;
    problem.textContent = data.problem || "";
    problem.hidden = !data.problem;
  }

  /* The unsaved General Settings, type settings and (when the dialog is open) the mapping
     being edited, rendered by the server exactly as a send would render them. */
  var pending = null;
  var sequence = 0;
  function livePreview() {
    if (!preview || !general || !preview.dataset.liveUrl) return;
    var body = new FormData(general);
    body.delete("refresh_type");
    if (form && dialog && dialog.open) {
      FIELDS.forEach(function (name) {
        if (form.elements[name]) body.append(name, form.elements[name].value);
      });
      body.append("editing", form.dataset.editing || "new");
    }
    var mine = ++sequence;
    fetch(preview.dataset.liveUrl, { method: "POST", body: body, credentials: "same-origin",
                                     headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) { if (mine === sequence) show(data); })
      .catch(function () { /* the last preview stays */ });
  }
  function soon() {
    clearTimeout(pending);
    pending = setTimeout(livePreview, 250);
  }

  if (dialog && form && typeof dialog.showModal === "function") {
    document.querySelectorAll("[data-mapping-dialog]").forEach(function (link) {
      link.addEventListener("click", function (event) {
        event.preventDefault();
        var values = link.dataset.values ? JSON.parse(link.dataset.values) : {};
        if (search) { search.value = ""; search.dispatchEvent(new Event("input")); }  // every field again
        FIELDS.forEach(function (name) {
          var input = form.elements[name];
          if (!input) return;
          var value = values[name] || "";
          if (input.tagName === "SELECT" && !value) input.selectedIndex = 0;
          else input.value = value;
        });
        /* A secret Static Value is never sent to the page: blank keeps it. */
        form.elements.static_value.placeholder = values.static_secret ? form.dataset.secretPlaceholder : "";
        form.action = link.dataset.action;
        form.dataset.editing = link.dataset.mappingId || "new";
        document.getElementById("mapping-dialog-title").textContent =
          link.dataset.values ? "Edit field mapping" : "Add field mapping";
        form.querySelectorAll(".error").forEach(function (e) { e.remove(); });
        form.querySelectorAll(".has-error").forEach(function (e) { e.classList.remove("has-error"); });
        syncFields();
        if (dialog.open) dialog.close();
        dialog.showModal();
        form.elements.export_name.focus();
        soon();
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
    dialog.addEventListener("close", function () {
      form.dataset.editing = "";
      soon();
    });
  }
  if (form) {
    form.addEventListener("input", soon);
    form.addEventListener("change", function () { syncFields(); soon(); });
    syncFields();
  }
  if (general) general.addEventListener("input", soon);
  if (general) general.addEventListener("change", soon);

  if (preview && problem && preview.dataset.url) {
    window.addEventListener("pageshow", function (event) {
      if (!event.persisted) return;
      fetch(preview.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(show)
        .catch(function () { /* the server-rendered preview stays */ });
    });
  }
})();
