// The app shell on both devices: start-up check, device indicator and switch, lab navigation,
// sub-path serving, no console errors, no off-origin requests.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { MODES, serveDist, launch, ShellPage, offOrigin } from "./harness.mjs";

// The start page's device check (64 × 64) computed in NumPy (make_device_check_golden.py).
const NUMPY_CHECKSUM = JSON.parse(fs.readFileSync(path.resolve("tests/fixtures/device/golden.json"), "utf8")).checksum["64"];

// GPT-2 ids of "When Mary and John went to the store, John gave a drink to".
const SENTENCE_IDS = [2215, 5335, 290, 1757, 1816, 284, 262, 3650, 11, 1757, 2921, 257, 4144, 284];

let srv;
const checksums = {};
before(async () => { srv = await serveDist(); });
after(() => srv.server.close());

for (const mode of MODES) {
  test(`shell starts and computes on ${mode.name}`, async () => {
    const b = await launch(mode);
    try {
      const shell = new ShellPage(b.page);
      await shell.open(srv.base);
      await shell.waitStartup();
      assert.equal(await shell.backend(), mode.backend, "device indicator names the device used");
      if (mode.backend === "cpu") {
        assert.ok(await b.page.isVisible('[data-testid="fallback-notice"]'), "CPU fallback is announced");
      }
      assert.deepEqual(await shell.tokenIds(), SENTENCE_IDS);
      assert.ok((await shell.maxError()) < 1e-4, "device result matches the float64 reference");
      checksums[mode.name] = await shell.checksum();
      assert.ok(Math.abs(checksums[mode.name] - NUMPY_CHECKSUM) < 1e-3, `checksum ${checksums[mode.name]} vs NumPy ${NUMPY_CHECKSUM}`);

      // The start page says what each lab is for, with one experiment to try first that runs.
      for (const lab of ["circuits", "merge", "neurofeedback", "dynamics"]) {
        assert.ok((await b.page.textContent(`[data-testid="overview-${lab}"]`)).length > 150, `${lab} described`);
        assert.match(await b.page.getAttribute(`[data-testid="try-${lab}"]`, "href"), new RegExp(`^#/${lab}\\?spec=.*&run=1$`));
      }
      await b.page.click('[data-testid="try-circuits"]');
      await b.page.waitForSelector('[data-testid="patch-status"][data-state="done"]', { state: "attached", timeout: 120_000 });
      await b.page.screenshot({ path: `target/screenshots/try-circuits-${mode.name}.png`, fullPage: true });
      await shell.gotoLab("home");

      await shell.gotoLab("circuits");
      await b.page.waitForSelector('[data-testid="lab-circuits"]');
      await shell.gotoLab("home");
      await b.page.waitForSelector('[data-testid="startup-status"]');

      // Switching to the CPU always works and recomputes there.
      await shell.switchTo("cpu");
      await b.page.waitForSelector('[data-testid="device-indicator"][data-backend="cpu"]');
      await shell.waitStartup();
      assert.ok((await shell.maxError()) < 1e-4);

      assert.deepEqual(offOrigin(b.requests, srv.base), [], "no request leaves the origin");
      assert.deepEqual(b.problems, [], "no console errors or panics");
    } finally {
      await b.close();
    }
  });
}

test("WebGPU and CPU agree", () => {
  assert.ok(Math.abs(checksums.webgpu - checksums.cpu) < 1e-3, JSON.stringify(checksums));
});

// The engine is its own module, started in a worker; where no worker starts, the page imports
// that module and computes on its own thread — the same check, the same numbers.
test("where the engine's worker cannot start, the page computes itself", async () => {
  const b = await launch(MODES[1]);
  try {
    await b.context.route(/\/engine\.js$/, (r) => r.abort());
    const shell = new ShellPage(b.page);
    await shell.open(srv.base);
    await shell.waitStartup();
    assert.equal(await b.page.getAttribute('[data-testid="device-indicator"]', "data-engine"), "in-page");
    assert.match(await b.page.textContent('[data-testid="device-indicator"]'), /computing in the page/);
    assert.ok(Math.abs((await shell.checksum()) - NUMPY_CHECKSUM) < 1e-3, "the check's numbers");
    await b.page.click('[data-testid="try-circuits"]');
    await b.page.waitForSelector('[data-testid="patch-status"][data-state="done"]', { state: "attached", timeout: 120_000 });
    assert.deepEqual(b.problems.filter((p) => /panic|page error/.test(p)), []);
  } finally {
    await b.close();
  }
});

// The page's module is the UI alone: the engine's module (Burn, WebGPU, the models) loads in
// the worker, and the page's own module stays small.
test("the page's module carries no engine", () => {
  const dist = path.resolve("dist");
  const gz = (f) => zlib.gzipSync(fs.readFileSync(f), { level: 9 }).length;
  const page = fs.readdirSync(dist).filter((f) => f.endsWith(".wasm"));
  const engine = fs.readdirSync(path.join(dist, "engine")).filter((f) => f.endsWith(".wasm"));
  assert.equal(page.length, 1);
  assert.equal(engine.length, 1);
  const html = fs.readFileSync(path.join(dist, "index.html"), "utf8");
  assert.match(html, new RegExp(`<meta name="interplay-engine" content="engine/${engine[0].replace("_bg.wasm", ".js")}"`));
  const sizes = { page: gz(path.join(dist, page[0])), engine: gz(path.join(dist, "engine", engine[0])) };
  assert.ok(sizes.page < sizes.engine / 2, JSON.stringify(sizes));
});
