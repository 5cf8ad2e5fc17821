// Service worker: precache the app, the LiteRT WASM runtime and the model bundle at install, then
// serve everything cache-first, so every start after the first works with no network at all.
const VERSION = "__VERSION__";
const ASSETS = __ASSETS__;
const CACHE = `sophia-${VERSION}`;

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(ASSETS)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k.startsWith("sophia-") && k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const lookup = request.mode === "navigate" ? "./" : request;
  event.respondWith(caches.match(lookup, { ignoreSearch: true }).then((hit) => hit || fetch(request)));
});
