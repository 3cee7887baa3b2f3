/* Every page: a button with data-confirm asks before its form is sent. The text is an
   attribute, never script, so any apostrophe or quote in it is safe. */
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    var text = button && button.dataset ? button.dataset.confirm : null;
    if (text && !window.confirm(text)) event.preventDefault();
  });
})();
