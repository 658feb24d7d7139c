// A lost WebGPU device (the browser's GPU process crashes): the run that hits it says so, the
// page switches to the CPU, and the same run then gives the same numbers there.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { MODES, serveDist, launch, CircuitsPage, maxRelErr } from "./harness.mjs";

// Hugging Face's logits for the prompt on the bundled model (make_goldens.py --bundled).
const GOLD = JSON.parse(fs.readFileSync(path.resolve("tests/fixtures/bundled/ioi-3l.json"), "utf8"));
const [POSITIONS, VOCAB] = GOLD.logits.shape;
const HF_LAST = GOLD.logits.data.slice((POSITIONS - 1) * VOCAB);

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
    assert.equal(GOLD.clean_text, prompt, "the golden's prompt");
    assert.equal(await lab.runText(prompt), "done");
    const onGpu = await lab.lastLogits();
    assert.equal(onGpu.length, VOCAB);
    assert.ok(maxRelErr(onGpu, HF_LAST) < 1e-4, "WebGPU's logits are Hugging Face's");

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
    const onCpu = await lab.lastLogits();
    assert.ok(maxRelErr(onCpu, onGpu) < 1e-4, "same numbers on the CPU");
    assert.equal(onCpu.length, VOCAB);
    assert.ok(maxRelErr(onCpu, HF_LAST) < 1e-4, "the CPU's logits after the loss are Hugging Face's");
    assert.deepEqual(b.problems.filter((p) => /panic/.test(p)), []);
  } finally {
    await b.close();
  }
});
