// The app shell on both devices: start-up check, device indicator and switch, lab navigation,
// sub-path serving, no console errors, no off-origin requests.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
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
