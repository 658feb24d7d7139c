// Recall vs reasoning (Circuits lab) in the browser against Hugging Face
// (tests/fixtures/make_recall_goldens.py): the questions answered as the model is, and with each
// circuit disabled, equal HF's. On the CPU the guided experiment (Set up loads SmolLM2, then Run:
// 24 discovery questions × 330 components mean-ablated at the last position, four circuits on
// the 24 test questions) and its finding; on WebGPU (SwiftShader) a share link with `run=1`
// holding the trimmed spec cut to 2 + 2 of its given questions (layers only, zero ablation; each
// discovery question is a SmolLM2 forward of 61 ablated copies, about a minute there), whose
// exported result equals `interplay run`'s (the trimmed spec whole is checked against HF on wgpu
// natively, crates/lab/tests/recall.rs). Then, on the
// CPU, a bad k is a message, Run waits for it, a k above the components is the engine's message,
// and the panel runs again.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { MODES, serveDist, launch, offOrigin, smollm2Skip, requireSmollm2, cliResult, exportedJson, sameJson } from "./harness.mjs";

const G = JSON.parse(fs.readFileSync(path.resolve("tests/fixtures/recall/golden.json"), "utf8"));

let srv;
before(async () => { srv = await serveDist(); });
after(() => srv.server.close());

/// The circuits table as { name: [recall correct, reasoning correct] }.
async function circuits(page) {
  return page.$$eval('[data-testid="recall-circuits"] tbody tr', (trs) => Object.fromEntries(trs.map((tr) =>
    [tr.dataset.circuit, [Number(tr.dataset.recall), Number(tr.dataset.reasoning)]])));
}

/// A circuit's components as the page names them ("L3 attn", "L3 MLP", "head 3.2").
async function components(page, name) {
  return page.getAttribute(`[data-testid="recall-circuits"] tr[data-circuit="${name}"]`, "data-components");
}

/// HF's `[layer, part, head]` named as the page does.
const named = (cs) => cs.map(([l, p, h]) => (p === "attn" ? `L${l} attn` : p === "mlp" ? `L${l} MLP` : `head ${l}.${h}`)).join("|");

const NAMES = {
  test: "nothing (the model as it is)",
  recall_circuit: "recall circuit",
  reasoning_circuit: "reasoning circuit",
  control: "as many random components (control)",
};

for (const mode of MODES) {
  test(`recall: recall vs reasoning equals Hugging Face on ${mode.name}`, { skip: smollm2Skip(), timeout: 30 * 60_000 }, async () => {
    requireSmollm2();
    const cpu = mode.name === "cpu";
    const g = cpu ? G.guided : G.trimmed;
    const spec = {
      lab: "circuits", experiment: "recall-reasoning", model: "smollm2",
      tasks: cpu ? "bundled" : { given: { recall: g.given.recall.slice(0, 2), reasoning: g.given.reasoning.slice(0, 2) } },
      ablation: g.spec.ablation, scope: g.spec.scope, heads: g.spec.heads, top_k: g.spec.top_k,
      control: g.spec.control, seed: g.spec.seed,
    };
    const b = await launch(mode);
    const page = b.page;
    try {
      const t0 = Date.now();
      if (cpu) {
        await page.goto(`${srv.base}#/circuits`);
        await page.waitForSelector('[data-testid="device-indicator"][data-backend]:not([data-backend=""])', { timeout: 60_000 });
        const seq = await page.getAttribute('[data-testid="model-load"]', "data-seq");
        await page.click('[data-testid="guide-recall-reasoning-setup"]');
        await page.waitForSelector(`[data-testid="model-load"][data-state="idle"]:not([data-seq="${seq}"])`, { timeout: 600_000, state: "attached" });
        assert.equal(await page.inputValue('[data-testid="recall-k"]'), String(g.spec.top_k));
        await page.click('[data-testid="recall-run"]');
      } else {
        await page.goto(`${srv.base}#/circuits?spec=${encodeURIComponent(JSON.stringify(spec))}&run=1`);
      }
      await page.waitForSelector('[data-testid="recall-status"]:not([data-seq="0"]):is([data-state="done"], [data-state="error"])', { timeout: 25 * 60_000, state: "attached" });
      const err = await page.$('[data-testid="recall-error"]');
      assert.equal(err && (await err.textContent()), null, "the run ends without an error");
      assert.equal(await page.getAttribute('[data-testid="device-indicator"]', "data-backend"), mode.backend);
      if (!cpu) {
        const { result } = await exportedJson(page, "recall");
        // Margins are differences of two logits (HF's tolerance for them: abs 1e-3); SwiftShader
        // sums in another order than the CLI on the CPU.
        const worst = sameJson(result, cliResult(spec), { rel: 1e-3, abs: 2e-3 });
        console.log(`recall on ${mode.name}: worst |difference| from the CLI ${worst.toExponential(2)}`);
      } else {
        // HF's circuits and their scores; a circuit whose components differ from HF's by a near
        // tie of selectivity (the native test bounds those) is not scored here.
        const got = await circuits(page);
        for (const [key, name] of Object.entries(NAMES)) {
          const w = g.circuits[key];
          if (!w) { assert.equal(got[name], undefined, name); continue; }
          const same = (await components(page, name)) === named(w.components);
          if (key === "test" || key === "control") assert.ok(same, `${name}: ${await components(page, name)}`);
          if (same) assert.deepEqual(got[name], [w.recall.correct, w.reasoning.correct], name);
        }
        const f = await page.textContent('[data-testid="recall-finding"]');
        assert.ok(f.includes(`the ${g.spec.top_k} most recall-selective components`), f);
        // This run's circuits dissociate (HF's counts say so); the finding says it agrees.
        const c = g.circuits;
        const drop = (k, t) => c.test[t].correct - c[k][t].correct;
        const dissociate = drop("recall_circuit", "recall") > drop("recall_circuit", "reasoning")
          && drop("reasoning_circuit", "reasoning") > drop("reasoning_circuit", "recall");
        assert.equal(await page.getAttribute('[data-testid="recall-finding"]', "data-agrees"), String(dissociate));
      }
      const comps = (g.spec.heads ? 11 : 2) * 30;
      assert.equal(Number(await page.getAttribute('[data-testid="recall-scatter"]', "data-points")), comps);
      console.log(`recall on ${mode.name}: ${((Date.now() - t0) / 1000).toFixed(0)} s (load + run)`);
      await page.locator('[data-testid="recall"]').screenshot({ path: path.join(process.env.INTERPLAY_SHOTS ?? "/tmp", `recall-${mode.name}.png`) });

      if (!cpu) {
        assert.deepEqual(offOrigin(b.requests, srv.base), []);
        assert.deepEqual(b.problems, []);
        return;
      }
      // A bad k is a message and Run waits for it.
      await page.fill('[data-testid="recall-k"]', "1.5");
      await page.dispatchEvent('[data-testid="recall-k"]', "change");
      assert.match(await page.textContent('[data-testid="recall-input-error"]'), /top k: enter a whole number/);
      const before = await page.getAttribute('[data-testid="recall-status"]', "data-seq");
      await page.click('[data-testid="recall-run"]');
      assert.notEqual(await page.getAttribute('[data-testid="recall-status"]', "data-state"), "running", "no run with a bad k");
      assert.equal(await page.getAttribute('[data-testid="recall-status"]', "data-seq"), before, "no run with a bad k");
      // A k above the components: the engine's message, and the page still works.
      await page.fill('[data-testid="recall-k"]', "1000");
      await page.dispatchEvent('[data-testid="recall-k"]', "change");
      assert.equal(await page.$('[data-testid="recall-input-error"]'), null);
      let seq = await page.getAttribute('[data-testid="recall-status"]', "data-seq");
      await page.click('[data-testid="recall-run"]');
      await page.waitForSelector(`[data-testid="recall-status"]:not([data-seq="${seq}"]):is([data-state="done"], [data-state="error"])`, { timeout: 10 * 60_000, state: "attached" });
      assert.match(await page.textContent('[data-testid="recall-error"]'), /top k must be between 1 and 165, half of the 330 components ablated/);
      // Layers only, zero ablation, k = 2, no control: it runs again.
      await page.fill('[data-testid="recall-k"]', "2");
      await page.dispatchEvent('[data-testid="recall-k"]', "change");
      await page.uncheck('[data-testid="recall-heads"]');
      await page.uncheck('[data-testid="recall-control"]');
      await page.selectOption('[data-testid="recall-ablation"]', "zero");
      seq = await page.getAttribute('[data-testid="recall-status"]', "data-seq");
      await page.click('[data-testid="recall-run"]');
      await page.waitForSelector(`[data-testid="recall-status"]:not([data-seq="${seq}"]):is([data-state="done"], [data-state="error"])`, { timeout: 10 * 60_000, state: "attached" });
      assert.equal(await page.$('[data-testid="recall-error"]'), null);
      const again = await circuits(page);
      assert.deepEqual(again[NAMES.test], [g.circuits.test.recall.correct, g.circuits.test.reasoning.correct], "the model alone again");
      assert.equal(again[NAMES.control], undefined);
      assert.equal(Number(await page.getAttribute('[data-testid="recall-scatter"]', "data-points")), 60);
      assert.deepEqual(offOrigin(b.requests, srv.base), []);
      assert.deepEqual(b.problems, []);
    } finally {
      await b.close();
    }
  });
}
