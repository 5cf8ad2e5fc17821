// A static server for the built app, on the loopback interface only (a phone needs HTTPS; any
// static host works). Usage: node serve.mjs [--root DIR] [--port N]
import { createReadStream, realpathSync, statSync } from "node:fs";
import { createServer } from "node:http";
import { extname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const TYPES = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
  ".json": "application/json", ".webmanifest": "application/manifest+json", ".wasm": "application/wasm",
  ".png": "image/png", ".tflite": "application/octet-stream",
};

export function serve(root, port = 0) {
  root = resolve(root);
  const stats = { requests: 0 };
  const server = createServer((req, res) => {
    stats.requests += 1;
    const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname));
    let file = join(root, path);
    if (!file.startsWith(root)) { res.writeHead(403).end(); return; }
    try {
      if (statSync(file).isDirectory()) file = join(file, "index.html");
      const size = statSync(file).size;
      res.writeHead(200, { "Content-Type": TYPES[extname(file)] ?? "application/octet-stream", "Content-Length": size,
        "Cache-Control": "no-cache" });
      createReadStream(file).pipe(res);
    } catch {
      res.writeHead(404).end("not found");
    }
  });
  return new Promise((ok) => server.listen(port, "127.0.0.1", () => ok({ server, stats, port: server.address().port })));
}

// realpath: node resolves a symlinked script path for import.meta.url but not in argv.
if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = (name, fallback) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : fallback; };
  const { port } = await serve(arg("--root", "../results/mobile"), Number(arg("--port", 8321)));
  console.log(`Sophia is served at http://127.0.0.1:${port}/ (Ctrl-C to stop)`);
}
