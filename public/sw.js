// Interplay's service worker: after one visit the site works with no network.
// The cache is named after the build (`cargo xtask build` writes BUILD: a hash of every other
// file of the site), so a new build installs a new worker, which deletes the old caches.
// Pages (navigations) and the small files that change between builds without changing their
// names (bundled models, tokenizers) are network-first: a returning student gets the new ones,
// and the cached copy only when offline. Everything else from the page's own origin (hashed
// code, the large fetched models) is cache-first. Nothing is fetched from other origins.
const BUILD = "dev";
const CACHE = "interplay-" + BUILD;
const REVALIDATED = ["bundled/", "tokenizers/"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(["./"])).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) => Promise.all(names.filter((n) => n.startsWith("interplay-") && n !== CACHE).map((n) => caches.delete(n))))
      .then(() => self.clients.claim()),
  );
});

/// Fetch from the network and keep a copy; on failure, the cached copy.
function networkFirst(req, fallback) {
  return fetch(req)
    .then((res) => {
      if (res.ok) {
        const copy = res.clone();
        caches.open(CACHE).then((c) => c.put(req, copy));
      }
      return res;
    })
    .catch(() => caches.match(req, { ignoreSearch: true }).then((r) => r || fallback()));
}

self.addEventListener("fetch", (event) => {
  const req = event.request;
  const url = new URL(req.url);
  if (req.method !== "GET" || url.origin !== self.location.origin) return;
  if (req.mode === "navigate") {
    event.respondWith(networkFirst(req, () => caches.match("./")));
    return;
  }
  const scope = new URL(self.registration.scope).pathname;
  const local = url.pathname.startsWith(scope) ? url.pathname.slice(scope.length) : url.pathname;
  if (REVALIDATED.some((p) => local.startsWith(p))) {
    event.respondWith(networkFirst(req, () => Response.error()));
    return;
  }
  event.respondWith(
    caches.match(req).then(
      (hit) =>
        hit ||
        fetch(req).then((res) => {
          if (res.ok) {
            const copy = res.clone();
            caches.open(CACHE).then((c) => c.put(req, copy));
          }
          return res;
        }),
    ),
  );
});
