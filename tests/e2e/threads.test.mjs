// The engine's CPU threads. A cross-origin isolated page (the server's COOP/COEP) runs the
// threaded engine: the header says "CPU × N threads" with every core, and a run gives the same
// numbers as with one thread (`?threads=1`). A host that sets no headers gets one thread, says
// why, and still computes; its service worker then adds the headers, so the next load is
// isolated. Correctness only: the speed-up is measured by `cargo xtask bench`.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { MODES, serveDist, launch, offOrigin, DynamicsPage } from "./harness.mjs";

const CPU = MODES.find((m) => m.name === "cpu");
// An ESN whose ridge fit sums over many states (Santa Fe: 2000 training steps) with 300 units
// (from 256 features the Gram matrix is split over the threads): a parallel kernel that changed
// the numbers would show here. ReservoirPy ran this very spec on the same weights and series
// (make_dynamics_goldens.py), so both thread counts are also checked against it.
const RPY = JSON.parse(fs.readFileSync(path.resolve("tests/fixtures/dynamics/golden.json"), "utf8"))
  .prediction.find((c) => c.spec.task === "santa-fe" && c.spec.reservoir.units === 300);
const ESN = RPY.spec;
const matchesReservoirPy = (text, what) => {
  const got = Number(text);
  assert.ok(Math.abs(got - RPY.nrmse) <= 2e-3 * RPY.nrmse, `${what}: NRMSE ${text} vs ReservoirPy ${RPY.nrmse}`);
};

const header = (page) => page.textContent('[data-testid="device-indicator"]');
const cores = (page) => page.evaluate(() => Math.min(16, navigator.hardwareConcurrency));

/// Run ESN on the CPU at `base`; the page's NRMSE and the header once the engine has started.
async function esn(b, base) {
  const lab = new DynamicsPage(b.page);
  await lab.open(base, ESN, "cpu");
  await lab.run("done", 300_000);
  return {
    nrmse: await b.page.textContent('[data-testid="dyn-nrmse"]'),
    header: await header(b.page),
    isolated: await b.page.evaluate(() => self.crossOriginIsolated),
  };
}

let isolated, plain;
before(async () => {
  isolated = await serveDist();
  plain = await serveDist({ isolate: false });
});
after(() => { isolated.server.close(); plain.server.close(); });

test("an isolated page computes on every core, with the numbers one thread gives", { timeout: 600_000 }, async () => {
  const b = await launch(CPU);
  try {
    const all = await esn(b, isolated.base);
    const n = await cores(b.page);
    assert.ok(all.isolated, "the server's COOP/COEP make the page cross-origin isolated");
    if (n > 1) assert.ok(b.requests.some((u) => u.includes("threads/engine_bg.wasm")), "the threaded engine module was loaded");
    assert.equal(all.header.trim(), n > 1 ? `CPU × ${n} threads` : "CPU × 1 thread");
    const one = await esn(b, isolated.base + "?threads=1");
    assert.equal(one.header.trim(), "CPU × 1 thread — one thread asked for");
    assert.equal(all.nrmse, one.nrmse, "threads change no number the page shows");
    matchesReservoirPy(all.nrmse, `${n} threads`);
    assert.deepEqual(b.problems, []);
    assert.deepEqual(offOrigin(b.requests, isolated.base), []);
  } finally {
    await b.close();
  }
});

test("a host without headers: one thread, said why; the service worker isolates the next load", { timeout: 600_000 }, async () => {
  const b = await launch(CPU);
  try {
    // The first load is not yet controlled by the service worker: no isolation, one thread.
    await b.page.goto(plain.base + "#/dynamics?spec=" + encodeURIComponent(JSON.stringify(ESN)));
    await b.page.waitForSelector('[data-testid="device-indicator"][data-backend="cpu"]', { timeout: 120_000, state: "attached" });
    assert.equal(await b.page.evaluate(() => self.crossOriginIsolated), false);
    const lab = new DynamicsPage(b.page);
    await lab.run("done", 300_000);
    assert.equal((await header(b.page)).trim(), "CPU × 1 thread — host does not allow threads");
    const single = await b.page.textContent('[data-testid="dyn-nrmse"]');
    await b.page.evaluate(() => navigator.serviceWorker.ready);
    // Reloaded under the service worker, whose responses carry COOP/COEP.
    const run = await esn(b, plain.base);
    assert.ok(run.isolated, "the service worker made the reloaded page cross-origin isolated");
    const n = await cores(b.page);
    if (n > 1) assert.equal(run.header.trim(), `CPU × ${n} threads`);
    assert.equal(run.nrmse, single, "the threaded engine gives the single-threaded module's numbers");
    matchesReservoirPy(single, "the single-threaded module");
    assert.deepEqual(b.problems, []);
    assert.deepEqual(offOrigin(b.requests, plain.base), []);
  } finally {
    await b.close();
  }
});
