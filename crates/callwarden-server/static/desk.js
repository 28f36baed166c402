// Callwarden review desk: the only script. It reports the browser's time zone at sign-in,
// keeps the queue live (server-sent events, then the table is fetched again with the page's
// own filters), and makes "back" links go back. Every page works without it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const tz = document.getElementById("tz");
  if (tz && window.Intl) {
    try { tz.value = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { /* UTC then */ }
  }
  for (const back of document.querySelectorAll("[data-back]")) {
    back.addEventListener("click", (e) => {
      if (history.length > 1) { e.preventDefault(); history.back(); }
    });
  }
  const live = document.querySelector("[data-live]");
  const region = document.getElementById("queue-region");
  const status = document.getElementById("live-status");
  if (!live || !region || !window.EventSource) return;
  let pending = null;
  const refresh = () => {
    const url = new URL(window.location.href);
    url.searchParams.set("partial", "1");
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then((r) => (r.ok ? r.text() : Promise.reject(r.status)))
      .then((html) => {
        region.innerHTML = html;
        if (status) status.textContent = status.dataset.updated;
      })
      .catch(() => { /* the next change tries again */ });
  };
  const source = new EventSource(live.dataset.live);
  source.addEventListener("change", () => {
    // Several changes at once (a report and its escalation) make one refresh.
    clearTimeout(pending);
    pending = setTimeout(refresh, 150);
  });
  source.addEventListener("open", () => { live.dataset.connected = "1"; });
  source.onerror = () => {
    live.dataset.connected = "0";
    if (status) status.textContent = status.dataset.lost;
  };
});
