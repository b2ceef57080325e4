// Browser-side routing over the History API: same-origin links navigate without reloading;
// each route is a pattern ("/org/:slug/team") and an async page function.

const routes = [];
let cleanups = [];
let renderToken = 0;

export function route(pattern, page) {
  const names = [];
  const regex = new RegExp(
    "^" + pattern.replace(/\/:(\w+)/g, (_, name) => { names.push(name); return "/([^/]+)"; }) + "/?$");
  routes.push({ regex, names, page });
}

/** Register work to undo when the page is left (timers, listeners). */
export function onLeave(fn) {
  cleanups.push(fn);
}

export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  return render();
}

export async function render() {
  for (const fn of cleanups.splice(0)) {
    try { fn(); } catch (e) { console.error(e); }
  }
  const token = ++renderToken;
  const path = location.pathname;
  const query = new URLSearchParams(location.search);
  for (const r of routes) {
    const m = path.match(r.regex);
    if (!m) continue;
    const params = Object.fromEntries(r.names.map((n, i) => [n, decodeURIComponent(m[i + 1])]));
    await r.page({ params, query, path, stale: () => token !== renderToken });
    return;
  }
  await notFound({ path });
}

let notFound = async () => {};
export function setNotFound(page) {
  notFound = page;
}

export function start() {
  window.addEventListener("popstate", () => render());
  document.addEventListener("click", (event) => {
    const a = event.target.closest("a[href]");
    if (!a || event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    if (a.target || a.hasAttribute("download") || a.dataset.external !== undefined) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || url.pathname.startsWith("/assets/") || url.pathname.startsWith("/platform/")) return;
    event.preventDefault();
    navigate(url.pathname + url.search + url.hash);
  });
  return render();
}
