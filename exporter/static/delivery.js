/* A delivery's page right after Retry now: ask the server every second and reload the page
   once the attempt is recorded (or the wait is over), so it never shows a stale "retrying". */
(function () {
  "use strict";
  var actions = document.getElementById("actions");
  if (!actions || !actions.hasAttribute("data-sending-soon")) return;
  var tries = 0;
  function poll() {
    tries += 1;
    fetch(actions.dataset.stateUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (state) {
        var changed = state && (state.status !== actions.dataset.status ||
                                String(state.attempts) !== actions.dataset.attempts || !state.sending_soon);
        if (changed) window.location.reload();
        else if (tries < 90) setTimeout(poll, 1000);
      })
      .catch(function () { if (tries < 90) setTimeout(poll, 2000); });
  }
  setTimeout(poll, 1000);
})();
