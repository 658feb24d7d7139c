// The page never freezes: the labs' computations run in the engine worker, so the main thread
// answers a trivial evaluation within 100 ms while they compute, on WebGPU and on the CPU, and
// Cancel gives the page back within 200 ms. An architectural property, so a browser test may
// assert it (the one timing assertion the project allows).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { MODES, serveDist, launch, offOrigin } from "./harness.mjs";

// The classic Izhikevich (2003) network: 800 + 200 neurons, 1 s.
const IZHIKEVICH = { experiment: "spiking", ms: 1000, seed: 1 };
// AdaMerging: learned coefficients over the four bundled fine-tunes.
const ADAMERGING = { lab: "merge", method: "adamerging" };
// Longer runs of the same, to Cancel while they surely still compute.
const LONG = {
  dynamics: { ...IZHIKEVICH, ms: 30_000 },
  merge: { ...ADAMERGING, adamerging: { steps: 2000 } },
};

const PROBE_MS = 4000;

let srv;
before(async () => { srv = await serveDist(); });
after(() => srv.server.close());

/// Open `lab`'s share link for `spec`, run it, and while it computes (up to PROBE_MS) ask the
/// main thread for `1 + 1` every 100 ms. Then start a longer run and Cancel it after 300 ms. Returns the
/// slowest answer, the answers taken, and how long Cancel took to give the page back (measured
/// in the page, from the click to the lab leaving its running state).
async function probe(page, lab, prefix, spec, backend) {
  const open = async (s) => {
    await page.goto(srv.base + `#/${lab}?spec=` + encodeURIComponent(JSON.stringify(s)));
    await page.reload();
    await page.waitForSelector(`[data-testid="device-indicator"][data-backend="${backend}"]`, { timeout: 120_000, state: "attached" });
  };
  await open(spec);
  const status = `[data-testid="${prefix}status"]`;
  const start = async () => {
    await page.click(`[data-testid="${prefix}run"]`, { noWaitAfter: true });
    await page.waitForSelector(`${status}[data-state="running"]`, { state: "attached" });
  };
  const running = async () => (await page.getAttribute(status, "data-state")) === "running";
  await start();
  let slowest = 0, answers = 0;
  const end = Date.now() + PROBE_MS;
  while (Date.now() < end && (await running())) {
    const t0 = performance.now();
    assert.equal(await page.evaluate(() => 1 + 1), 2);
    slowest = Math.max(slowest, performance.now() - t0);
    answers++;
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!(await running())) {
    assert.equal(await page.getAttribute(status, "data-state"), "done", await page.textContent(status));
  } else {
    await page.click(`[data-testid="${prefix}cancel"]`);
  }
  await page.waitForSelector(`${status}:not([data-state="running"])`, { state: "attached" });
  // The run went to the engine worker, not the page.
  assert.ok(page.workers().some((w) => /engine\.js$/.test(w.url())), "no engine worker");
  await open(LONG[lab]);
  await start();
  await page.waitForTimeout(300);
  assert.ok(await running(), "the second run should still be computing");
  const cancelMs = await page.evaluate((s) => new Promise((resolve) => {
    const t0 = performance.now();
    document.querySelector(`[data-testid="${s.prefix}cancel"]`).click();
    const check = () => document.querySelector(s.status).dataset.state === "running"
      ? setTimeout(check, 2) : resolve(performance.now() - t0);
    check();
  }), { prefix, status });
  return { slowest, answers, cancelMs };
}

for (const mode of MODES) {
  test(`the page answers within 100 ms while the engine computes, and Cancel is prompt, on ${mode.name}`, async () => {
    const b = await launch(mode);
    try {
      for (const [lab, prefix, spec] of [
        ["dynamics", "dyn-", IZHIKEVICH],
        ["merge", "merge-", ADAMERGING],
      ]) {
        const r = await probe(b.page, lab, prefix, spec, mode.backend);
        console.log(`[${mode.name}] ${lab}: slowest answer ${r.slowest.toFixed(1)} ms of ${r.answers}; cancel ${r.cancelMs.toFixed(1)} ms`);
        assert.ok(r.answers >= 5, `${lab}: only ${r.answers} answers while it computed`);
        assert.ok(r.slowest <= 100, `${lab}: the main thread took ${r.slowest.toFixed(1)} ms to answer`);
        assert.ok(r.cancelMs <= 200, `${lab}: Cancel took ${r.cancelMs.toFixed(1)} ms`);
        assert.match(await b.page.textContent(`[data-testid="${prefix}error"]`), /cancelled/);
      }
      assert.deepEqual(offOrigin(b.requests, srv.base), []);
      assert.deepEqual(b.problems, []);
    } finally {
      await b.close();
    }
  });
}
