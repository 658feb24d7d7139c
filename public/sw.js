// Interplay's service worker: after the first visit the site works with no network.
// `cargo xtask build` writes BUILD (a hash of every other file of the site) and PRECACHE (those
// files, but the fetched models): install caches them all, so the first visit already works
// offline, and a new build installs a new worker whose activation deletes this site's old
// caches. Caches are named per site (the worker's scope), so two deployments on one origin keep
// theirs. Pages and the small files that change between builds without changing their names
// (bundled models, tokenizers) are network-first: a returning student gets the new ones, the
// cached copy only offline. Fetched models (`models/`, 98 MB) live in a cache of their own that
// outlives builds and are cache-first, like the hashed code. Nothing is fetched from other
// origins.
//
// Cross-origin isolation: every response it gives carries COOP/COEP, so a page it controls can
// use shared memory — the engine's CPU threads — even on a static host that cannot set headers
// (from the second load on: the first is not yet controlled). All the site's files are
// same-origin, so `require-corp` blocks nothing.
const BUILD = "dev";
const PRECACHE = [];
const SCOPE = new URL(self.registration.scope).pathname;
const CACHE = `interplay-${BUILD}@${SCOPE}`;
const MODELS = `interplay-models@${SCOPE}`;
const REVALIDATED = ["bundled/", "tokenizers/"];

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((c) => c.addAll(["./", ...PRECACHE]))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  const stale = (n) => n.startsWith("interplay-") && n.endsWith(`@${SCOPE}`) && n !== CACHE && n !== MODELS;
  event.waitUntil(
    caches
      .keys()
      .then((names) => Promise.all(names.filter(stale).map((n) => caches.delete(n))))
      .then(() => self.clients.claim()),
  );
});

/// Keep a copy of a good response in `cache`; the event lives until the copy is written.
function keep(event, cache, req, res) {
  if (res.ok) {
    const copy = res.clone();
    event.waitUntil(caches.open(cache).then((c) => c.put(req, copy)));
  }
  return res;
}

/// From `cache` if there, else from the network (and kept).
function cacheFirst(event, cache) {
  return caches
    .open(cache)
    .then((c) => c.match(event.request))
    .then((hit) => hit || fetch(event.request).then((res) => keep(event, cache, event.request, res)));
}

/// From the network (and kept); the cached copy only when the network fails.
function networkFirst(event, fallback) {
  return fetch(event.request)
    .then((res) => keep(event, CACHE, event.request, res))
    .catch(() =>
      caches
        .open(CACHE)
        .then((c) => c.match(event.request, { ignoreSearch: true }))
        .then((r) => r || fallback()),
    );
}

/// `res` with the headers that make the page cross-origin isolated.
function isolated(res) {
  if (!res || res.type === "opaque" || res.status === 0) return res;
  const headers = new Headers(res.headers);
  headers.set("Cross-Origin-Opener-Policy", "same-origin");
  headers.set("Cross-Origin-Embedder-Policy", "require-corp");
  return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
}

self.addEventListener("fetch", (event) => {
  const req = event.request;
  const url = new URL(req.url);
  if (req.method !== "GET" || url.origin !== self.location.origin) return;
  if (req.mode === "navigate") {
    event.respondWith(
      networkFirst(event, () => caches.open(CACHE).then((c) => c.match("./"))).then(isolated),
    );
    return;
  }
  const local = url.pathname.startsWith(SCOPE) ? url.pathname.slice(SCOPE.length) : url.pathname;
  if (local.startsWith("models/")) {
    event.respondWith(cacheFirst(event, MODELS).then(isolated));
  } else if (REVALIDATED.some((p) => local.startsWith(p))) {
    event.respondWith(networkFirst(event, () => Response.error()).then(isolated));
  } else {
    event.respondWith(cacheFirst(event, CACHE).then(isolated));
  }
});
