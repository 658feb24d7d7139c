// Circuit component reuse (Circuits lab) in the browser against Hugging Face + NumPy
// (tests/fixtures/make_reuse_goldens.py); the Colored Objects items answered, with and without the
// attention intervention, equal HF's item by item. On the CPU the guided experiment (Set up loads
// SmolLM2, then Run: 4 + 4 pairs patched head by head, 60 items scored three ways) and its
// finding; on WebGPU (SwiftShader) a share link with `run=1` holding the trimmed spec without its
// head patching (pairs = 0: a SmolLM2 head sweep takes SwiftShader far too long; the native wgpu
// test patches) — 2 given IOI pairs, 4 given items, one head. Then, on the CPU, a bad head is a message, Run waits for
// it, and the panel runs again.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { MODES, serveDist, launch, offOrigin, smollm2Skip, requireSmollm2 } from "./harness.mjs";

const G = JSON.parse(fs.readFileSync(path.resolve("tests/fixtures/reuse/golden.json"), "utf8"));

let srv;
before(async () => { srv = await serveDist(); });
after(() => srv.server.close());

/// The table's conditions as { name: [correct, total] }.
async function scores(page) {
  return page.$$eval('[data-testid="reuse-scores"] tbody tr', (trs) => Object.fromEntries(trs.map((tr) =>
    [tr.dataset.condition, [Number(tr.dataset.correct), Number(tr.dataset.total)]])));
}

for (const mode of MODES) {
  test(`reuse: IOI vs Colored Objects equals Hugging Face on ${mode.name}`, { skip: smollm2Skip(), timeout: 30 * 60_000 }, async () => {
    requireSmollm2();
    const cpu = mode.name === "cpu";
    const g = cpu ? G.guided : G.trimmed;
    const spec = {
      lab: "circuits", experiment: "circuit-reuse", model: "smollm2",
      tasks: cpu ? "bundled" : { given: g.given },
      pairs: cpu ? g.spec.pairs : 0, top_k: g.spec.top_k, heads: g.spec.heads, control: g.spec.control, seed: g.spec.seed,
    };
    const b = await launch(mode);
    const page = b.page;
    try {
      const t0 = Date.now();
      if (cpu) {
        await page.goto(`${srv.base}#/circuits`);
        await page.waitForSelector('[data-testid="device-indicator"][data-backend]:not([data-backend=""])', { timeout: 60_000 });
        const seq = await page.getAttribute('[data-testid="model-load"]', "data-seq");
        await page.click('[data-testid="guide-circuit-reuse-setup"]');
        await page.waitForSelector(`[data-testid="model-load"][data-state="idle"]:not([data-seq="${seq}"])`, { timeout: 600_000, state: "attached" });
        assert.equal(await page.inputValue('[data-testid="reuse-heads"]'), g.spec.heads.map(([l, h]) => `${l}.${h}`).join(", "));
        await page.click('[data-testid="reuse-run"]');
      } else {
        await page.goto(`${srv.base}#/circuits?spec=${encodeURIComponent(JSON.stringify(spec))}&run=1`);
      }
      await page.waitForSelector('[data-testid="reuse-status"]:not([data-seq="0"]):is([data-state="done"], [data-state="error"])', { timeout: 25 * 60_000, state: "attached" });
      const err = await page.$('[data-testid="reuse-error"]');
      assert.equal(err && (await err.textContent()), null, "the run ends without an error");
      assert.equal(await page.getAttribute('[data-testid="device-indicator"]', "data-backend"), mode.backend);
      const n = g.base.items.length;
      const want = {
        "model as it is": [g.base.correct, n],
        intervention: [g.intervened.correct, n],
      };
      if (g.control) want["random heads (control)"] = [g.control.correct, n];
      assert.deepEqual(await scores(page), want, `Colored Objects answered on ${mode.name}`);
      if (!cpu) assert.ok(await page.$('[data-testid="reuse-no-patching"]'), "no patching said so");
      if (cpu) {
        const f = await page.textContent('[data-testid="reuse-finding"]');
        assert.ok(f.includes(`Colored Objects: ${g.base.correct}/${n} answered`), f);
        assert.ok(f.includes(`${g.intervened.correct}/${n}`), f);
        assert.equal(await page.getAttribute('[data-testid="reuse-finding"]', "data-agrees"), "true");
        const s2 = await page.textContent('[data-testid="reuse-s2"]');
        for (const [l, h] of g.spec.heads) assert.ok(s2.includes(`${l}.${h} (`), `S2 heads named: ${s2}`);
      }
      console.log(`reuse on ${mode.name}: ${((Date.now() - t0) / 1000).toFixed(0)} s (load + run)`);
      await page.locator('[data-testid="reuse"]').screenshot({ path: path.join(process.env.INTERPLAY_SHOTS ?? "/tmp", `reuse-${mode.name}.png`) });

      if (!cpu) {
        assert.deepEqual(offOrigin(b.requests, srv.base), []);
        assert.deepEqual(b.problems, []);
        return;
      }
      // A bad head is a message and Run waits for it; the panel still runs (one pair, no control).
      await page.fill('[data-testid="reuse-heads"]', "23.3, twenty");
      await page.dispatchEvent('[data-testid="reuse-heads"]', "change");
      assert.match(await page.textContent('[data-testid="reuse-input-error"]'), /layer\.head/);
      const before = await page.getAttribute('[data-testid="reuse-status"]', "data-seq");
      await page.click('[data-testid="reuse-run"]');
      assert.equal(await page.getAttribute('[data-testid="reuse-status"]', "data-seq"), before, "no run with a bad head");
      await page.fill('[data-testid="reuse-heads"]', "99.0");
      await page.dispatchEvent('[data-testid="reuse-heads"]', "change");
      assert.equal(await page.$('[data-testid="reuse-input-error"]'), null);
      await page.fill('[data-testid="reuse-pairs"]', "1");
      await page.dispatchEvent('[data-testid="reuse-pairs"]', "change");
      let seq = await page.getAttribute('[data-testid="reuse-status"]', "data-seq");
      await page.click('[data-testid="reuse-run"]');
      await page.waitForSelector(`[data-testid="reuse-status"]:not([data-seq="${seq}"]):is([data-state="done"], [data-state="error"])`, { timeout: 10 * 60_000, state: "attached" });
      // A head the model lacks: the engine's message, and the page still works.
      assert.match(await page.textContent('[data-testid="reuse-error"]'), /there is no head 99\.0: this model has 30 layers of 9 heads/);
      await page.fill('[data-testid="reuse-heads"]', "23.3");
      await page.dispatchEvent('[data-testid="reuse-heads"]', "change");
      await page.uncheck('[data-testid="reuse-control"]');
      seq = await page.getAttribute('[data-testid="reuse-status"]', "data-seq");
      await page.click('[data-testid="reuse-run"]');
      await page.waitForSelector(`[data-testid="reuse-status"]:not([data-seq="${seq}"]):is([data-state="done"], [data-state="error"])`, { timeout: 10 * 60_000, state: "attached" });
      assert.equal(await page.$('[data-testid="reuse-error"]'), null);
      const again = await scores(page);
      assert.deepEqual(again["model as it is"], [g.base.correct, n], "the model alone again");
      assert.equal(again["random heads (control)"], undefined);
      assert.deepEqual(offOrigin(b.requests, srv.base), []);
      assert.deepEqual(b.problems, []);
    } finally {
      await b.close();
    }
  });
}
