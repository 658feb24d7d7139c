// Activation patching in the page from a share link, on WebGPU and on the CPU fallback: the grid
// matches the CLI running the same spec and Hugging Face's golden grid; bad links and mismatched
// prompts give messages. Saves a screenshot of each heatmap under target/screenshots/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { MODES, serveDist, launch, CircuitsPage, offOrigin } from "./harness.mjs";

const FIX = path.resolve("tests/fixtures");
const g = JSON.parse(fs.readFileSync(path.join(FIX, "tiny-llama", "golden.json"), "utf8")).patching;
const SPEC = {
  model: "model.gguf", clean: g.clean, corrupt: g.corrupt, answer: g.answer, wrong: g.wrong, target: "resid_pre",
};
const SHOTS = path.resolve("target/screenshots");

function cliGrid() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "interplay-spec-"));
  const spec = path.join(dir, "spec.json");
  fs.writeFileSync(spec, JSON.stringify(SPEC));
  const out = execFileSync("cargo", ["run", "-q", "-p", "interplay-cli", "--", "run", spec, "--model", path.join(FIX, "tiny-llama", "model.gguf")], { encoding: "utf8" });
  return JSON.parse(out);
}

let srv, cli;
before(async () => { srv = await serveDist(); cli = cliGrid(); fs.mkdirSync(SHOTS, { recursive: true }); });
after(() => srv.server.close());

for (const mode of MODES) {
  test(`patching from a share link matches the CLI on ${mode.name}`, async () => {
    const b = await launch(mode);
    try {
      const page = b.page;
      await page.goto(srv.base + "#/circuits?spec=" + encodeURIComponent(JSON.stringify(SPEC)));
      const lab = new CircuitsPage(page);
      await page.waitForSelector('[data-testid="patching"]');
      assert.equal(await page.inputValue('[data-testid="patch-clean"]'), g.clean.join(","), "the link filled the form");
      await lab.loadFiles([path.join(FIX, "tiny-llama", "model.gguf")]);
      const seq = await page.getAttribute('[data-testid="patch-status"]', "data-seq");
      await page.click('[data-testid="patch-run"]');
      await page.waitForSelector(`[data-testid="patch-status"]:not([data-seq="${seq}"]):is([data-state="done"], [data-state="error"])`, { timeout: 120_000, state: "attached" });
      assert.equal(await page.getAttribute('[data-testid="patch-status"]', "data-state"), "done");
      const grid = JSON.parse(await page.getAttribute('[data-testid="patch-grid"]', "data-values"));
      assert.equal(grid.length, cli.grid.length);
      for (let l = 0; l < grid.length; l++) {
        for (let p = 0; p < grid[l].length; p++) {
          assert.ok(Math.abs(grid[l][p] - cli.grid[l][p]) < 1e-3, `[${l}][${p}] page ${grid[l][p]} vs CLI ${cli.grid[l][p]}`);
          assert.ok(Math.abs(grid[l][p] - g.resid_pre[l][p]) < 1e-3, `[${l}][${p}] page ${grid[l][p]} vs HF ${g.resid_pre[l][p]}`);
        }
      }
      // The heatmap exports as a standalone SVG file.
      const [download] = await Promise.all([page.waitForEvent("download"), page.click('[data-testid="patch-grid-svg"]')]);
      const svgPath = path.join(SHOTS, `patching-${mode.name}.svg`);
      await download.saveAs(svgPath);
      assert.match(fs.readFileSync(svgPath, "utf8"), /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
      const share = await page.inputValue('[data-testid="share-link"]');
      assert.match(share, /#\/circuits\?spec=/);
      await page.locator('[data-testid="patch-grid"]').screenshot({ path: path.join(SHOTS, `patching-${mode.name}.png`) });
      await page.screenshot({ path: path.join(SHOTS, `circuits-${mode.name}.png`), fullPage: true });

      // Mismatched token counts: a message, and the page keeps working.
      await page.fill('[data-testid="patch-corrupt"]', g.corrupt.slice(1).join(","));
      const seq2 = await page.getAttribute('[data-testid="patch-status"]', "data-seq");
      await page.click('[data-testid="patch-run"]');
      await page.waitForSelector(`[data-testid="patch-status"]:not([data-seq="${seq2}"])[data-state="error"]`, { state: "attached" });
      assert.match(await page.textContent('[data-testid="patch-error"]'), /same number of tokens/);

      assert.deepEqual(offOrigin(b.requests, srv.base), []);
      assert.deepEqual(b.problems, []);
    } finally {
      await b.close();
    }
  });
}

test("embed mode hides navigation and the chosen panels and locks the inputs", async () => {
  const b = await launch(MODES[1]);
  try {
    const url = srv.base + "#/circuits?spec=" + encodeURIComponent(JSON.stringify(SPEC)) + "&embed=1&lock=1&hide=guided,model,head-scores";
    await b.page.setViewportSize({ width: 800, height: 600 });
    await b.page.goto(url);
    await b.page.waitForSelector('[data-testid="patching"]');
    assert.equal(await b.page.isVisible('nav.labs'), false, "no navigation");
    for (const id of ["guided", "lab-circuits", "head-scores"]) {
      assert.equal(await b.page.isVisible(`[data-testid="${id}"]`), false, `${id} hidden`);
    }
    assert.ok(await b.page.isVisible('[data-testid="patching"]'));
    assert.ok(await b.page.isDisabled('[data-testid="patch-clean"]'), "inputs locked");
    // Head ablation and path patching are not in the link: a locked embed hides them, so the
    // reader can change none of their inputs.
    assert.equal(await b.page.isVisible('[data-testid="ablation"]'), false, "ablation hidden when locked");
    for (const id of ["ablation-kind", "pp-senders", "pp-receivers"]) {
      assert.equal(await b.page.isVisible(`[data-testid="${id}"]`), false, `${id} out of reach`);
    }
    assert.equal(await b.page.inputValue('[data-testid="patch-clean"]'), g.clean.join(","));
    await b.page.screenshot({ path: path.join(SHOTS, "embed-800x600.png") });
  } finally {
    await b.close();
  }
});

test("a damaged share link says so and the lab still works", async () => {
  const b = await launch(MODES[1]);
  try {
    await b.page.goto(srv.base + "#/circuits?spec=%7Bnot-a-spec");
    await b.page.waitForSelector('[data-testid="link-error"]');
    assert.match(await b.page.textContent('[data-testid="link-error"]'), /share link/);
    assert.equal(await b.page.inputValue('[data-testid="patch-answer"]'), " Mary", "defaults are used");
    assert.deepEqual(b.problems, []);
  } finally {
    await b.close();
  }
});

test("work in progress survives a reload", async () => {
  const b = await launch(MODES[1]);
  try {
    await b.page.goto(srv.base + "#/circuits");
    await b.page.waitForSelector('[data-testid="patching"]');
    await b.page.fill('[data-testid="patch-clean"]', "When Anna and Bob met, Bob thanked");
    await b.page.fill('[data-testid="prompt-text"]', "My own prompt");
    await b.page.reload();
    await b.page.waitForSelector('[data-testid="patching"]');
    assert.equal(await b.page.inputValue('[data-testid="patch-clean"]'), "When Anna and Bob met, Bob thanked");
    assert.equal(await b.page.inputValue('[data-testid="prompt-text"]'), "My own prompt");
    assert.deepEqual(b.problems, []);
  } finally {
    await b.close();
  }
});
