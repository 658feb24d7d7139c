// A static file server for the built site (classroom use and the browser tests).
// `node tests/e2e/serve.mjs --dir dist --port 8080 [--prefix /courses/interp/]`
// With --prefix the site is served under that sub-path only, proving relative URLs work.
// Every response carries COOP/COEP, so the page is cross-origin isolated and the engine computes
// on the CPU with every core (shared memory); `--no-isolation` (or `isolate: false`) serves it as
// a host that sets no headers would, before its service worker adds them.
import http from "node:http";
import fs from "node:fs";
import path from "node:path";

const TYPES = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
  ".wasm": "application/wasm", ".css": "text/css", ".json": "application/json",
  ".svg": "image/svg+xml", ".png": "image/png", ".txt": "text/plain; charset=utf-8",
  ".bpe": "text/plain; charset=utf-8", ".gguf": "application/octet-stream",
  ".safetensors": "application/octet-stream", ".webmanifest": "application/manifest+json",
};

const ISOLATION = {
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-embedder-policy": "require-corp",
};

export function startServer({ dir, port = 0, prefix = "/", isolate = true }) {
  const root = path.resolve(dir);
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://127.0.0.1");
    let p = decodeURIComponent(url.pathname);
    if (!p.startsWith(prefix)) {
      res.writeHead(404).end("not under " + prefix);
      return;
    }
    p = p.slice(prefix.length);
    if (p === "" || p.endsWith("/")) p += "index.html";
    const file = path.resolve(root, p);
    if (!file.startsWith(root)) {
      res.writeHead(403).end();
      return;
    }
    fs.stat(file, (err, st) => {
      if (err || !st.isFile()) {
        res.writeHead(404).end("not found");
        return;
      }
      res.writeHead(200, {
        "content-type": TYPES[path.extname(file)] ?? "application/octet-stream",
        "content-length": st.size,
        "cache-control": "no-cache",
        ...(isolate ? ISOLATION : {}),
      });
      fs.createReadStream(file).pipe(res);
    });
  });
  return new Promise((resolve) => {
    server.listen(port, "127.0.0.1", () => resolve(server));
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name, dflt) => {
    const i = process.argv.indexOf(name);
    return i >= 0 ? process.argv[i + 1] : dflt;
  };
  const prefix = arg("--prefix", "/");
  const isolate = !process.argv.includes("--no-isolation");
  const server = await startServer({ dir: arg("--dir", "dist"), port: Number(arg("--port", 8080)), prefix, isolate });
  console.log(`serving ${arg("--dir", "dist")} at http://127.0.0.1:${server.address().port}${prefix}`);
}
