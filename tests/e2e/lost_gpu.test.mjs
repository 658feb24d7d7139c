// A lost WebGPU device (the browser's GPU process crashes): the run that hits it says so, the
// page switches to the CPU, and the same run then gives the same numbers there.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { MODES, serveDist, launch, CircuitsPage, maxRelErr } from "./harness.mjs";

let srv;
before(async () => { srv = await serveDist(); });
after(() => srv.server.close());

test("a lost GPU device gives a message and the page carries on on the CPU", async () => {
  const b = await launch(MODES[0]);
  try {
    const page = b.page;
    const lab = new CircuitsPage(page);
    await page.goto(srv.base + "#/circuits");
    await page.waitForSelector('[data-testid="device-indicator"][data-backend="wgpu"]', { timeout: 120_000 });
    await page.click('[data-testid="load-ioi-3l"]');
    await page.waitForSelector('[data-testid="model-name"]:has-text("IOI")', { timeout: 60_000 });
    const prompt = "When Mary and Tom went to the store, Tom gave a drink to";
    assert.equal(await lab.runText(prompt), "done");
    const onGpu = await lab.lastLogits();

    // Crash the browser's GPU process (DevTools protocol): WebGPU loses the device.
    const cdp = await b.context.newCDPSession(page);
    await cdp.send("Browser.crashGpuProcess");
    await page.waitForTimeout(3000);

    const messages = [];
    let state = "";
    for (let i = 0; i < 3 && (await page.getAttribute('[data-testid="device-indicator"]', "data-backend")) === "wgpu"; i++) {
      state = await lab.run();
      if (state === "error") messages.push(await lab.runError());
    }
    assert.equal(await page.getAttribute('[data-testid="device-indicator"]', "data-backend"), "cpu", `states ${state}, messages ${messages}, problems ${b.problems}`);
    assert.ok(messages.some((m) => /GPU device was lost/.test(m)), `messages: ${messages}`);
    assert.ok(await page.isVisible('[data-testid="device-lost"]'));
    assert.equal(await lab.run(), "done");
    assert.ok(maxRelErr(await lab.lastLogits(), onGpu) < 1e-4, "same numbers on the CPU");
    assert.deepEqual(b.problems.filter((p) => /panic/.test(p)), []);
  } finally {
    await b.close();
  }
});
