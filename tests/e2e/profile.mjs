// Where the page's engine spends its time, by Rust function (prints, asserts nothing):
//
//   CARGO_TARGET_DIR=... node tests/e2e/profile.mjs [decode|forward|sweep] [--threads N]
//
// After `cargo xtask build`. The site's engine module has no function names (wasm-opt drops
// them), so a copy of `dist/` gets the engine's module as linked (names kept) through
// wasm-bindgen, under the same name; the engine runs in the page (no Worker: the page imports
// the engine's module) so Chromium's sampling profiler (CDP `Profiler`) sees it; SmolLM2 on the
// CPU. Self and inclusive times, top functions first.
// This is how decode's time was found in gemm's scalar one-row path (`transformer::rows`).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { MODES, launch } from "./harness.mjs";
import { startServer } from "./serve.mjs";

const what = process.argv[2] ?? "decode";
const threadsAt = process.argv.indexOf("--threads");
const threads = threadsAt > 0 ? Number(process.argv[threadsAt + 1]) : 1;
const target = process.env.CARGO_TARGET_DIR ?? "target";
const linked = path.join(target, "wasm32-unknown-unknown/release/interplay-engine.wasm");
if (!fs.existsSync("dist/index.html") || !fs.existsSync(linked)) {
  throw new Error(`run \`cargo xtask build\` first (need dist/ and ${linked})`);
}

// dist/ with the named engine module in place of the optimised one.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "interplay-profile-"));
// The fetched models (hundreds of MB) are linked, not copied.
fs.cpSync("dist", dir, { recursive: true, filter: (src) => path.relative("dist", src) !== "models" });
fs.symlinkSync(path.resolve("dist/models"), path.join(dir, "models"));
const engineDir = path.join(dir, "engine");
const wasm = fs.readdirSync(engineDir).find((f) => /^engine-.*_bg\.wasm$/.test(f));
const name = wasm.replace(/_bg\.wasm$/, "");
fs.rmSync(path.join(engineDir, wasm));
fs.rmSync(path.join(engineDir, `${name}.js`));
execFileSync("wasm-bindgen", ["--target", "web", "--no-typescript", "--out-dir", engineDir, "--out-name", name, linked]);

const server = await startServer({ dir, port: 0, prefix: "/p/", isolate: true });
const base = `http://127.0.0.1:${server.address().port}/p/`;
const b = await launch(MODES.find((m) => m.name === "cpu"));
const page = b.page;
try {
  // No Worker: the engine runs in the page, where the profiler is attached.
  await page.addInitScript(() => { window.Worker = undefined; });
  await page.goto(`${base}?threads=${threads}#/circuits`);
  await page.waitForSelector('[data-testid="device-indicator"][data-backend]:not([data-backend=""])', { timeout: 60_000 });
  await page.click('[data-testid="load-smollm2"]', { timeout: 600_000 });
  await page.waitForSelector('[data-testid="model-load"][data-state="idle"]:not([data-seq="0"])', { timeout: 600_000, state: "attached" });
  const err = await page.$('[data-testid="model-error"]');
  if (err) throw new Error(await err.textContent());
  const actions = {
    decode: ['[data-testid="generate-run"]', '[data-testid="generate-status"]'],
    forward: ['[data-testid="run-prompt"]', '[data-testid="run-status"]'],
    sweep: ['[data-testid="patch-run"]', '[data-testid="patch-status"]'],
  };
  const [button, status] = actions[what] ?? actions.decode;
  if (what === "decode") await page.fill('[data-testid="generate-max"]', "32");
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Profiler.enable");
  await cdp.send("Profiler.setSamplingInterval", { interval: 500 });
  await cdp.send("Profiler.start");
  const t0 = Date.now();
  await page.click(button, { timeout: 600_000 });
  await page.waitForSelector(`${status}:not([data-seq="0"]):is([data-state="done"], [data-state="error"])`, { timeout: 900_000, state: "attached" });
  const wall = Date.now() - t0;
  const { profile } = await cdp.send("Profiler.stop");

  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  profile.nodes.forEach((n) => (n.children ?? []).forEach((c) => parent.set(c, n.id)));
  const label = (n) => (n.callFrame.functionName || "?").replace(/::h[0-9a-f]{16}$/, "").slice(0, 150);
  const self = new Map();
  const incl = new Map();
  profile.samples.forEach((id, i) => {
    const ms = (profile.timeDeltas[i] ?? 0) / 1000;
    const own = label(byId.get(id));
    self.set(own, (self.get(own) ?? 0) + ms);
    const seen = new Set();
    for (let cur = id; cur; cur = parent.get(cur)) {
      const k = label(byId.get(cur));
      if (!seen.has(k)) {
        seen.add(k);
        incl.set(k, (incl.get(k) ?? 0) + ms);
      }
    }
  });
  const top = (m, n) => [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) => `${v.toFixed(0).padStart(7)} ms  ${k}`).join("\n");
  console.log(`${what} on the CPU, ${threads} thread(s), engine in the page: ${wall} ms`);
  if (what === "decode") {
    const rate = await page.$('[data-testid="generate-rate"]');
    if (rate) console.log(`${await rate.getAttribute("data-tokens")} tokens in ${Number(await rate.getAttribute("data-ms")).toFixed(0)} ms`);
  }
  console.log(`self time\n${top(self, 30)}\ninclusive time\n${top(incl, 40)}`);
} finally {
  await b.close();
  server.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
