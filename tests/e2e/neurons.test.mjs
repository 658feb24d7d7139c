// Relation-specific neurons (Circuits lab) in the browser against Hugging Face + NumPy
// (tests/fixtures/make_relation_neurons_goldens.py); the table's accuracies equal HF's. On the CPU
// the guided experiment (Set up loads SmolLM2, then Run: 67 facts, 12 runs) and its finding; on
// WebGPU (SwiftShader) a share link with `run=1` holding the trimmed spec (6 given facts, 3
// forwards: every block has a hook, so none takes the fused kernels). Then, on the CPU, a bad k is
// a message, Run waits for it, and the panel runs again.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { MODES, serveDist, launch, offOrigin, smollm2Skip, requireSmollm2 } from "./harness.mjs";

const G = JSON.parse(fs.readFileSync(path.resolve("tests/fixtures/neurons/golden.json"), "utf8"));

let srv;
before(async () => { srv = await serveDist(); });
after(() => srv.server.close());

for (const mode of MODES) {
  test(`neurons: relation-specific neurons equal Hugging Face on ${mode.name}`, { skip: smollm2Skip(), timeout: 30 * 60_000 }, async () => {
    requireSmollm2();
    const cpu = mode.name === "cpu";
    const g = cpu ? G.guided : G.trimmed;
    const spec = {
      lab: "circuits", experiment: "relation-neurons", model: "smollm2",
      facts: cpu ? "bundled" : { given: g.given },
      relation: g.spec.relation, ks: g.spec.ks, random: g.spec.random, seed: g.spec.seed,
    };
    const b = await launch(mode);
    const page = b.page;
    try {
      const t0 = Date.now();
      if (cpu) {
        // The guided experiment: Set up loads SmolLM2 and fills the panel; then Run.
        await page.goto(`${srv.base}#/circuits`);
        await page.waitForSelector('[data-testid="device-indicator"][data-backend]:not([data-backend=""])', { timeout: 60_000 });
        const seq = await page.getAttribute('[data-testid="model-load"]', "data-seq");
        await page.click('[data-testid="guide-relation-neurons-setup"]');
        await page.waitForSelector(`[data-testid="model-load"][data-state="idle"]:not([data-seq="${seq}"])`, { timeout: 600_000, state: "attached" });
        assert.equal(await page.inputValue('[data-testid="neurons-ks"]'), g.spec.ks.join(", "));
        assert.equal(await page.inputValue('[data-testid="neurons-relation"]'), g.spec.relation);
        await page.click('[data-testid="neurons-run"]');
      } else {
        await page.goto(`${srv.base}#/circuits?spec=${encodeURIComponent(JSON.stringify(spec))}&run=1`);
      }
      await page.waitForSelector('[data-testid="neurons-status"]:not([data-seq="0"]):is([data-state="done"], [data-state="error"])', { timeout: 25 * 60_000, state: "attached" });
      const err = await page.$('[data-testid="neurons-error"]');
      assert.equal(err && (await err.textContent()), null, "the run ends without an error");
      assert.equal(await page.getAttribute('[data-testid="device-indicator"]', "data-backend"), mode.backend);
      const rows = await page.$$eval('[data-testid="neurons-table"] tbody tr', (trs) => trs.map((tr) => ({
        k: Number(tr.dataset.k), correct: JSON.parse(tr.dataset.correct),
        random: tr.dataset.random ? JSON.parse(tr.dataset.random) : null,
      })));
      assert.deepEqual(rows.map((r) => r.k), g.spec.ks);
      assert.deepEqual(rows.map((r) => r.correct), g.ranked.map((p) => p.correct), `top-k accuracies on ${mode.name}`);
      if (g.random) assert.deepEqual(rows.map((r) => r.random), g.random.map((p) => p.correct), "random-neuron control");
      if (cpu) {
        // The finding quotes HF's accuracies at the first k that halves the capital facts.
        const p = g.ranked.find((q) => q.k > 0 && 2 * q.correct[0] <= g.ranked[0].correct[0]);
        const f = await page.textContent('[data-testid="neurons-finding"]');
        assert.ok(f.includes(`With the top ${p.k} “capital” neurons off the model answers ${p.correct[0]}/26 capital facts (was 26)`), f);
        assert.equal(await page.getAttribute('[data-testid="neurons-finding"]', "data-agrees"), "true");
      } else {
        assert.match(await page.textContent('[data-testid="neurons-facts"]'), /the 6 given by the link \(capital, opposite\)/);
      }
      const top = await page.textContent('[data-testid="neurons-top"]');
      const [l, i] = g.top[0];
      assert.ok(top.includes(`L${l}.${i} `), `the best neuron named: ${top}`);
      console.log(`neurons on ${mode.name}: ${((Date.now() - t0) / 1000).toFixed(0)} s from the link (load + run)`);
      await page.locator('[data-testid="neurons"]').screenshot({ path: path.join(process.env.INTERPLAY_SHOTS ?? "/tmp", `neurons-${mode.name}.png`) });

      if (!cpu) {
        // The form's checks are the same on both devices; SwiftShader's minutes go to the run.
        assert.deepEqual(offOrigin(b.requests, srv.base), []);
        assert.deepEqual(b.problems, []);
        return;
      }
      // A bad k is a message and Run waits for it; the panel still runs (k = 0: the baseline).
      await page.fill('[data-testid="neurons-ks"]', "0, ten");
      await page.dispatchEvent('[data-testid="neurons-ks"]', "change");
      assert.match(await page.textContent('[data-testid="neurons-input-error"]'), /whole numbers/);
      const before = await page.getAttribute('[data-testid="neurons-status"]', "data-seq");
      await page.click('[data-testid="neurons-run"]');
      assert.equal(await page.getAttribute('[data-testid="neurons-status"]', "data-seq"), before, "no run with a bad k");
      await page.fill('[data-testid="neurons-ks"]', "0");
      await page.dispatchEvent('[data-testid="neurons-ks"]', "change");
      assert.equal(await page.$('[data-testid="neurons-input-error"]'), null);
      await page.uncheck('[data-testid="neurons-random"]');
      const seq = await page.getAttribute('[data-testid="neurons-status"]', "data-seq");
      await page.click('[data-testid="neurons-run"]');
      await page.waitForSelector(`[data-testid="neurons-status"]:not([data-seq="${seq}"]):is([data-state="done"], [data-state="error"])`, { timeout: 10 * 60_000, state: "attached" });
      const again = await page.$$eval('[data-testid="neurons-table"] tbody tr', (trs) => trs.map((tr) => JSON.parse(tr.dataset.correct)));
      assert.deepEqual(again, [g.ranked[0].correct], "the baseline again");
      assert.deepEqual(offOrigin(b.requests, srv.base), []);
      assert.deepEqual(b.problems, []);
    } finally {
      await b.close();
    }
  });
}
