// What a student sees when a link or an input is wrong (#26 item 7), on WebGPU and on the CPU: a
// plain sentence that names the problem, never parser jargon or a silent fallback. (Random bytes
// named .gguf are in circuits.test.mjs; Dynamics and Merge inputs in their own tests.)
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { MODES, serveDist, launch, CircuitsPage, smollm2Skip, requireSmollm2 } from "./harness.mjs";

let srv;
before(async () => { srv = await serveDist(); });
after(() => srv.server.close());

/// Click "Analyse the prompt" and wait for its outcome ("done" or "error").
async function analyse(page, timeout = 300_000) {
  const seq = await page.getAttribute('[data-testid="analysis-status"]', "data-seq");
  await page.click('[data-testid="analysis-run"]');
  await page.waitForSelector(`[data-testid="analysis-status"]:not([data-seq="${seq}"]):is([data-state="done"], [data-state="error"])`, { state: "attached", timeout });
  return page.getAttribute('[data-testid="analysis-status"]', "data-state");
}

async function runPrompt(page, timeout = 300_000) {
  const seq = await page.getAttribute('[data-testid="run-status"]', "data-seq");
  await page.click('[data-testid="run-prompt"]');
  await page.waitForSelector(`[data-testid="run-status"]:not([data-seq="${seq}"]):is([data-state="done"], [data-state="error"])`, { state: "attached", timeout });
  return page.getAttribute('[data-testid="run-status"]', "data-state");
}

const link = (lab, spec) => `#/${lab}?spec=` + encodeURIComponent(JSON.stringify(spec));
const IOI = {
  lab: "circuits", model: "ioi-3l", clean: "When Mary and Tom went to the store, Tom gave a drink to",
  corrupt: "When Mary and Tom went to the store, Mary gave a drink to", answer: "Mary", wrong: "Tom",
  target: "resid_pre",
};

for (const mode of MODES) {
  test(`links and inputs get plain messages on ${mode.name}`, async () => {
    const b = await launch(mode);
    try {
      const { page } = b;
      const open = async (hash) => { await page.goto(srv.base + hash); await page.reload(); };

      // A damaged field: its name and what it should hold.
      await open(link("circuits", { ...IOI, clean: 5 }));
      await page.waitForSelector('[data-testid="link-error"]');
      const damaged = await page.textContent('[data-testid="link-error"]');
      assert.match(damaged, /clean: .*the prompt as text, or a list of token ids/);
      assert.doesNotMatch(damaged, /untagged|variant/);

      // A page Interplay does not have: the start page says so.
      await open("#/circuts?spec=%7B%7D");
      await page.waitForSelector('[data-testid="route-error"]');
      assert.match(await page.textContent('[data-testid="route-error"]'), /“circuts”.*The labs are Circuits/);
      await open("#/circuits&x=1");
      await page.waitForSelector('[data-testid="route-error"]');

      // A model the link names that Interplay does not bundle: what to do about it.
      await open(link("circuits", { ...IOI, model: "my-gpt" }));
      await page.waitForSelector('[data-testid="model-error"]');
      assert.match(await page.textContent('[data-testid="model-error"]'), /“my-gpt”, which Interplay does not bundle/);

      // An answer word outside a word-level vocabulary is refused, not read as <unk>.
      const lab = new CircuitsPage(page);
      await open(link("circuits", IOI));
      await page.waitForSelector('[data-testid="model-info"]', { timeout: 120_000 });
      await page.fill('[data-testid="prompt-ids"]', "");
      await page.fill('[data-testid="prompt-text"]', IOI.clean);
      await page.fill('[data-testid="analysis-answer"]', "Zeus");
      await analyse(page);
      assert.match(await page.textContent('[data-testid="analysis-error"]'), /"Zeus" is not in this model's vocabulary/);
      assert.equal(await lab.run(), "done", "the lab still works");

      // A prompt longer than the bundled model's context: a message, and Analyse works again.
      await page.fill('[data-testid="prompt-text"]', Array(40).fill(IOI.clean).join(" "));
      await page.fill('[data-testid="analysis-answer"]', "Mary");
      assert.equal(await analyse(page), "error");
      assert.match(await page.textContent('[data-testid="analysis-error"]'), /context/);
      await page.fill('[data-testid="prompt-text"]', IOI.clean);
      assert.equal(await analyse(page), "done");

      assert.deepEqual(b.problems, []);
    } finally {
      await b.close();
    }
  });
}

// The report's crash: a 5,000-character prompt on SmolLM2 (≈1,270 tokens, 1.7 GB of attention
// patterns) trapped the engine and left the panel "running". Now: refused at once with a length
// that fits, and the panel analyses again; so is a Run whose attention would not fit. CPU only (SwiftShader takes minutes per SmolLM2 pass).
test("an analysis too big for the page says so and the panel recovers (SmolLM2, CPU)", { skip: smollm2Skip(), timeout: 15 * 60_000 }, async () => {
  requireSmollm2();
  const b = await launch(MODES[1]);
  try {
    const { page } = b;
    const lab = new CircuitsPage(page);
    await lab.open(srv.base);
    await page.click('[data-testid="load-smollm2"]');
    await page.waitForSelector('[data-testid="model-info"]', { timeout: 300_000 });
    const words = "The quick brown fox jumps over the lazy dog while the students watch closely. ";
    await page.fill('[data-testid="prompt-ids"]', "");
    await page.fill('[data-testid="prompt-text"]', words.repeat(Math.ceil(5000 / words.length)).slice(0, 5000));
    await page.fill('[data-testid="analysis-answer"]', "");
    await page.fill('[data-testid="analysis-wrong"]', "");
    assert.equal(await analyse(page), "error");
    assert.match(await page.textContent('[data-testid="analysis-error"]'), /shorten the prompt to at most 498 tokens/);
    await page.fill('[data-testid="prompt-text"]', "When Mary and John went to the store, John gave a drink to");
    assert.equal(await analyse(page), "done", "the panel analyses again");
    // Run on ≈6,000 tokens: one layer's attention scores alone would be ~1.3 GB.
    await page.fill('[data-testid="prompt-text"]', words.repeat(Math.ceil(30000 / words.length)));
    assert.equal(await runPrompt(page), "error");
    assert.match(await page.textContent('[data-testid="run-error"]'), /more than the page can hold at once .* shorten the prompt to at most \d+ tokens/);
    await page.fill('[data-testid="prompt-text"]', "When Mary and John went to the store, John gave a drink to");
    assert.equal(await runPrompt(page), "done", "the prompt runs again");
    assert.deepEqual(b.problems, []);
  } finally {
    await b.close();
  }
});
