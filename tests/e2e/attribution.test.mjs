// Attribution patching in the page, on WebGPU and on the CPU fallback: a share link opens the
// patching panel with the method set; the run loads the gradients engine (its own module), whose
// estimate matches PyTorch autograd's golden and the CLI running the same spec, beside the
// activation-patching sweep (Hugging Face's golden); the same engine then serves a plain sweep.
// On the CPU, the guided experiment on SmolLM2 (its correlation and overlap are the references').
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { MODES, serveDist, launch, CircuitsPage, offOrigin, smollm2Skip, requireSmollm2 } from "./harness.mjs";

const FIX = path.resolve("tests/fixtures");
const MODEL = path.join(FIX, "tiny-llama", "model.gguf");
const at = JSON.parse(fs.readFileSync(path.join(FIX, "attribution", "golden.json"), "utf8")).models["tiny-llama"];
const act = JSON.parse(fs.readFileSync(path.join(FIX, "patching", "golden.json"), "utf8")).models["tiny-llama"];
const TARGET = "head_out_pos";
const SPEC = {
  lab: "circuits", experiment: "attribution-patching", model: "model.gguf",
  clean: at.clean, corrupt: at.corrupt, answer: at.answer, wrong: at.wrong, target: TARGET,
};
const SHOTS = path.resolve("target/screenshots");
const normalised = (g) => g[TARGET].map((row) => row.map((v) => (v - g.corrupt_metric) / (g.clean_metric - g.corrupt_metric)));

function cli() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "interplay-spec-"));
  const spec = path.join(dir, "spec.json");
  fs.writeFileSync(spec, JSON.stringify(SPEC));
  const out = execFileSync("cargo", ["run", "-q", "-p", "interplay-cli", "--", "run", spec, "--model", MODEL], { encoding: "utf8" });
  return JSON.parse(out).result;
}

function close(got, want, what) {
  assert.equal(got.length, want.length, `${what}: rows`);
  for (let r = 0; r < got.length; r++) {
    assert.equal(got[r].length, want[r].length, `${what}[${r}]: columns`);
    for (let c = 0; c < got[r].length; c++) {
      assert.ok(Math.abs(got[r][c] - want[r][c]) < 1e-3, `${what}[${r}][${c}]: ${got[r][c]} vs ${want[r][c]}`);
    }
  }
}

let srv, ours;
before(async () => { srv = await serveDist(); ours = cli(); fs.mkdirSync(SHOTS, { recursive: true }); });
after(() => srv.server.close());

for (const mode of MODES) {
  test(`attribution patching from a share link matches PyTorch and the CLI on ${mode.name}`, async () => {
    const b = await launch(mode);
    try {
      const page = b.page;
      const gradients = [];
      page.on("request", (r) => { if (r.url().includes("/gradients/")) gradients.push(r.url()); });
      await page.goto(srv.base + "#/circuits?spec=" + encodeURIComponent(JSON.stringify(SPEC)));
      const lab = new CircuitsPage(page);
      await page.waitForSelector('[data-testid="patching"]');
      assert.equal(await page.inputValue('[data-testid="patch-method"]'), "attribution", "the link set the method");
      assert.equal(await page.inputValue('[data-testid="patch-target"]'), TARGET);
      await lab.loadFiles([MODEL]);
      assert.deepEqual(gradients, [], "the gradients engine loads only when a run needs it");

      const run = async () => {
        const seq = await page.getAttribute('[data-testid="patch-status"]', "data-seq");
        await page.click('[data-testid="patch-run"]');
        await page.waitForSelector(`[data-testid="patch-status"]:not([data-seq="${seq}"]):is([data-state="done"], [data-state="error"])`, { timeout: 300_000, state: "attached" });
        const err = await page.$('[data-testid="patch-error"]');
        assert.equal(await page.getAttribute('[data-testid="patch-status"]', "data-state"), "done", err ? await err.textContent() : "");
      };
      await run();
      assert.ok(gradients.some((u) => u.endsWith(".wasm")), "the gradients engine's module was loaded");
      const estimate = JSON.parse(await page.getAttribute('[data-testid="attribution-grid"]', "data-values"));
      close(estimate, normalised(at), "estimate vs PyTorch");
      close(estimate, ours.attribution.grid, "estimate vs CLI");
      const sweep = JSON.parse(await page.getAttribute('[data-testid="patch-grid"]', "data-values"));
      close(sweep, normalised(act), "sweep vs Hugging Face");
      assert.equal(await page.textContent('[data-testid="attribution-correlation"]'), ours.correlation.toFixed(3));
      assert.equal(await page.textContent('[data-testid="attribution-overlap"]'), `${ours.top_overlap} of ${ours.top}`);
      const share = decodeURIComponent(await page.inputValue('[data-testid="share-link"]'));
      assert.match(share, /"experiment":"attribution-patching"/);
      await page.locator('[data-testid="attribution-grid"]').screenshot({ path: path.join(SHOTS, `attribution-${mode.name}.png`) });

      // The gradients engine serves a plain sweep too, with the same numbers.
      await page.selectOption('[data-testid="patch-method"]', "activation");
      await run();
      assert.equal(await page.$('[data-testid="attribution-grid"]'), null);
      close(JSON.parse(await page.getAttribute('[data-testid="patch-grid"]', "data-values")), normalised(act), "plain sweep");

      assert.deepEqual(offOrigin(b.requests, srv.base), []);
      assert.deepEqual(b.problems, []);
    } finally {
      await b.close();
    }
  });
}

// The guided experiment on the CPU: Set up loads SmolLM2 and picks attribution patching of head
// outputs on the IOI pair; the run's correlation and top-10 overlap are those of PyTorch's
// estimate and HF's sweep (the numbers its text quotes).
test("the guided attribution experiment on SmolLM2 gives the references' correlation", { skip: smollm2Skip() }, async () => {
  requireSmollm2();
  const ref = (file) => JSON.parse(fs.readFileSync(path.join(FIX, file, "golden.json"), "utf8")).models.smollm2;
  const norm = (g) => g.head_out.flat().map((v) => (v - g.corrupt_metric) / (g.clean_metric - g.corrupt_metric));
  const [x, y] = [norm(ref("attribution")), norm(ref("patching"))];
  const mean = (v) => v.reduce((a, b) => a + b, 0) / v.length;
  const [mx, my] = [mean(x), mean(y)];
  const dot = (u, mu, v, mv) => u.reduce((s, a, i) => s + (a - mu) * (v[i] - mv), 0);
  const r = dot(x, mx, y, my) / Math.sqrt(dot(x, mx, x, mx) * dot(y, my, y, my));
  const b = await launch(MODES.find((m) => m.name === "cpu"));
  try {
    const page = b.page;
    await page.goto(`${srv.base}#/circuits`);
    await page.waitForSelector('[data-testid="device-indicator"][data-backend]:not([data-backend=""])', { timeout: 60_000 });
    const seq = await page.getAttribute('[data-testid="model-load"]', "data-seq");
    await page.click('[data-testid="guide-attribution-setup"]');
    await page.waitForSelector(`[data-testid="model-load"][data-state="idle"]:not([data-seq="${seq}"])`, { timeout: 600_000, state: "attached" });
    assert.equal(await page.inputValue('[data-testid="patch-method"]'), "attribution");
    assert.equal(await page.inputValue('[data-testid="patch-target"]'), "head_out");
    const run = await page.getAttribute('[data-testid="patch-status"]', "data-seq");
    await page.click('[data-testid="patch-run"]');
    await page.waitForSelector(`[data-testid="patch-status"]:not([data-seq="${run}"]):is([data-state="done"], [data-state="error"])`, { timeout: 600_000, state: "attached" });
    const err = await page.$('[data-testid="patch-error"]');
    assert.equal(err && (await err.textContent()), null, "the run ends without an error");
    const got = Number(await page.textContent('[data-testid="attribution-correlation"]'));
    assert.ok(Math.abs(got - r) <= 1.5e-3, `correlation ${got} vs the references' ${r}`);
    assert.equal(await page.textContent('[data-testid="attribution-overlap"]'), "10 of 10");
    await page.screenshot({ path: path.join(SHOTS, "attribution-guided-cpu.png"), fullPage: true });
    assert.deepEqual(offOrigin(b.requests, srv.base), []);
    assert.deepEqual(b.problems, []);
  } finally {
    await b.close();
  }
});
