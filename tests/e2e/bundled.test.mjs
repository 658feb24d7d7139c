// The Circuits lab's bundled models, on WebGPU and on the CPU fallback: the IOI share link on the
// bundled IOI model loads it by itself, runs the resid_pre patching sweep and shows the CLI's grid
// (and Hugging Face's, from the committed golden); the induction guided experiment finds an
// induction head. Saves heatmap screenshots under target/screenshots/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { MODES, serveDist, launch, offOrigin } from "./harness.mjs";

const SHOTS = path.resolve("target/screenshots");
const GOLD = JSON.parse(fs.readFileSync(path.resolve("tests/fixtures/bundled/ioi-3l.json"), "utf8"));
const SPEC = {
  model: "ioi-3l",
  clean: "When Mary and Tom went to the store, Tom gave a drink to",
  corrupt: "When Mary and Tom went to the store, Mary gave a drink to",
  answer: "Mary", wrong: "Tom", target: "resid_pre",
};

function cli(spec) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "interplay-spec-"));
  const file = path.join(dir, "spec.json");
  fs.writeFileSync(file, JSON.stringify(spec));
  return JSON.parse(execFileSync("cargo", ["run", "-q", "-p", "interplay-cli", "--", "run", file], { encoding: "utf8" }));
}

async function waitDone(page, id, seq, timeout = 300_000) {
  await page.waitForSelector(`[data-testid="${id}"]:not([data-seq="${seq}"]):is([data-state="done"], [data-state="error"])`, { timeout, state: "attached" });
  return page.getAttribute(`[data-testid="${id}"]`, "data-state");
}

let srv, ref;
before(async () => { srv = await serveDist(); ref = cli(SPEC); fs.mkdirSync(SHOTS, { recursive: true }); });
after(() => srv.server.close());

for (const mode of MODES) {
  test(`IOI share link on the bundled model matches the CLI on ${mode.name}`, async () => {
    const b = await launch(mode);
    try {
      const page = b.page;
      await page.goto(srv.base + "#/circuits?spec=" + encodeURIComponent(JSON.stringify(SPEC)));
      // The link names a bundled model: it loads without a click.
      await page.waitForSelector('[data-testid="model-name"]:has-text("IOI")', { timeout: 60_000 });
      await page.waitForSelector('[data-testid="device-indicator"][data-backend]:not([data-backend=""])');
      assert.equal(await page.getAttribute('[data-testid="device-indicator"]', "data-backend"), mode.backend);
      const seq = await page.getAttribute('[data-testid="patch-status"]', "data-seq");
      await page.click('[data-testid="patch-run"]');
      assert.equal(await waitDone(page, "patch-status", seq), "done");
      const grid = JSON.parse(await page.getAttribute('[data-testid="patch-grid"]', "data-values"));
      assert.equal(grid.length, ref.grid.length);
      for (let l = 0; l < grid.length; l++) {
        assert.equal(grid[l].length, ref.grid[l].length);
        for (let p = 0; p < grid[l].length; p++) {
          assert.ok(Math.abs(grid[l][p] - ref.grid[l][p]) < 1e-3, `[${l}][${p}] page ${grid[l][p]} vs CLI ${ref.grid[l][p]}`);
          assert.ok(Math.abs(grid[l][p] - GOLD.resid_pre[l][p]) < 1e-3, `[${l}][${p}] page ${grid[l][p]} vs HF ${GOLD.resid_pre[l][p]}`);
        }
      }
      await page.locator('[data-testid="patch-grid"]').screenshot({ path: path.join(SHOTS, `bundled-ioi-resid-pre-${mode.name}.png`) });
      // The link is the guided experiment's sweep: the paper's claim and what this grid shows.
      const finding = page.locator('[data-testid="patch-finding"]');
      assert.equal(await finding.getAttribute("data-agrees"), "true");
      assert.match(await finding.textContent(), /second name \(position 9 Tom\) in layers 0–1 \(1\.00 at layer 0\), and at the last position from layer 2 on/);
      // The heatmap exports as a PNG drawn in the page.
      const [png] = await Promise.all([page.waitForEvent("download"), page.click('[data-testid="patch-grid-png"]')]);
      const pngPath = path.join(SHOTS, `bundled-ioi-export-${mode.name}.png`);
      await png.saveAs(pngPath);
      const bytes = fs.readFileSync(pngPath);
      assert.deepEqual([...bytes.subarray(1, 4)].map((c) => String.fromCharCode(c)).join(""), "PNG");
      assert.ok(bytes.length > 2000, `PNG of ${bytes.length} bytes`);

      // Each head's output position by position: rows L{l}H{h}, the CLI's numbers.
      const posRef = cli({ ...SPEC, target: "head_out_pos" });
      await page.selectOption('[data-testid="patch-target"]', "head_out_pos");
      const s3 = await page.getAttribute('[data-testid="patch-status"]', "data-seq");
      await page.click('[data-testid="patch-run"]');
      assert.equal(await waitDone(page, "patch-status", s3), "done");
      const pos = JSON.parse(await page.getAttribute('[data-testid="patch-grid"]', "data-values"));
      assert.equal(pos.length, 12, "3 layers × 4 heads");
      assert.equal(await page.locator('[data-testid="patch-finding"]').count(), 0, "no guided experiment's sweep");
      for (let r = 0; r < pos.length; r++) {
        for (let p = 0; p < pos[r].length; p++) {
          assert.ok(Math.abs(pos[r][p] - posRef.grid[r][p]) < 1e-3, `[${r}][${p}] page ${pos[r][p]} vs CLI ${posRef.grid[r][p]}`);
          assert.ok(Math.abs(pos[r][p] - GOLD.head_out_pos[r][p]) < 1e-3, `[${r}][${p}] page ${pos[r][p]} vs HF ${GOLD.head_out_pos[r][p]}`);
        }
      }

      // The logit lens names its top predictions with words (the id on hover), not "#id".
      const sa = await page.getAttribute('[data-testid="analysis-status"]', "data-seq");
      await page.click('[data-testid="analysis-run"]');
      assert.equal(await waitDone(page, "analysis-status", sa), "done");
      const lensRow = await page.textContent('[data-testid="logit-lens"] tbody tr');
      console.log(`[${mode.name}] logit lens, first layer: ${lensRow}`);
      assert.doesNotMatch(lensRow, /#\d/, lensRow);
      // Where this run commits, read from its own lens.
      console.log(`[${mode.name}] ${await page.textContent('[data-testid="lens-commit"]')}`);
      assert.match(await page.textContent('[data-testid="lens-commit"]'), /^This run: Mary is more probable than John from row “L1 in” to the output, and the top prediction from row “L1 in”\.$/);
      assert.match(await page.getAttribute('[data-testid="logit-lens"] tbody td span', "title"), /^token #\d+$/);
      await page.locator('[data-testid="logit-lens"]').screenshot({ path: path.join(SHOTS, `bundled-logit-lens-${mode.name}.png`) });

      // Guide texts can be read before Set up, and each Set up button names its experiment.
      assert.ok((await page.textContent('[data-testid="guide-induction-bundled-text"]')).length > 100);
      assert.match(await page.getAttribute('[data-testid="guide-induction-bundled-setup"]', "aria-label"), /^Set up: .*induction/i);
      // The induction guided experiment switches to the induction model; its detectors find the circuit.
      await page.click('[data-testid="guide-induction-bundled-setup"]');
      await page.waitForSelector('[data-testid="model-name"]:has-text("induction")', { timeout: 60_000 });
      assert.equal(await page.inputValue('[data-testid="scores-half"]'), "20");
      const s2 = await page.getAttribute('[data-testid="scores-status"]', "data-seq");
      await page.click('[data-testid="scores-run"]');
      assert.equal(await waitDone(page, "scores-status", s2), "done");
      const first = Number(await page.getAttribute('[data-testid="scores-loss"]', "data-first"));
      const second = Number(await page.getAttribute('[data-testid="scores-loss"]', "data-second"));
      assert.ok(second < 0.1 * first, `loss ${first} → ${second}`);
      const induction = JSON.parse(await page.getAttribute('[data-testid="induction-map"]', "data-values"));
      const sum = induction[1].reduce((a, b) => a + b, 0);
      assert.ok(sum > 0.8, `layer-1 induction scores ${induction[1]}`);
      await page.locator('[data-testid="induction-map"]').screenshot({ path: path.join(SHOTS, `bundled-induction-${mode.name}.png`) });
      await page.screenshot({ path: path.join(SHOTS, `bundled-${mode.name}.png`), fullPage: true });

      assert.deepEqual(offOrigin(b.requests, srv.base), []);
      assert.deepEqual(b.problems, []);
    } finally {
      await b.close();
    }
  });
}
