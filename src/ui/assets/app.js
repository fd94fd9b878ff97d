// hoard dashboard: refreshes the open page's main part every data-refresh seconds
// (0: never), while the tab is visible. No framework, nothing loaded from elsewhere.
(function () {
  const main = document.getElementById("main");
  if (!main) return;
  const every = Number(main.dataset.refresh || 0) * 1000;
  if (!every) return;
  async function refresh() {
    if (document.hidden) return;
    try {
      const r = await fetch(location.href, { headers: { "x-hoard-fragment": "1" }, credentials: "same-origin", redirect: "manual" });
      if (r.type === "opaqueredirect" || r.status === 401) { location.assign("/ui/login"); return; }
      if (!r.ok) return;
      main.innerHTML = await r.text();
      main.dataset.refreshed = String(Date.now());
    } catch (e) { /* the server is away: try again at the next tick */ }
  }
  setInterval(refresh, every);
})();
