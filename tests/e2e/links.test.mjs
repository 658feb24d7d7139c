// Links that run (#26 item 6), on WebGPU and on the CPU: `run=1` runs the experiment when the
// page opens; an embed shows the result first, without the share boxes, and `lock=1` leaves no
// input of the experiment editable; the share box and the snippet have Copy buttons.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import fs from "node:fs";
import { MODES, serveDist, launch } from "./harness.mjs";

const SHOTS = path.resolve("target/screenshots");
let srv;
before(async () => { srv = await serveDist(); fs.mkdirSync(SHOTS, { recursive: true }); });
after(() => srv.server.close());

const link = (lab, spec) => `#/${lab}?spec=` + encodeURIComponent(JSON.stringify(spec));
const IZ = { lab: "dynamics", experiment: "spiking", ms: 100, seed: 1, trace_neurons: [0, 850] };
const IOI = {
  lab: "circuits", model: "ioi-3l", clean: "When Mary and Tom went to the store, Tom gave a drink to",
  corrupt: "When Mary and Tom went to the store, Mary gave a drink to", answer: "Mary", wrong: "Tom",
  target: "resid_pre",
};
const done = (page, status) =>
  page.waitForSelector(`[data-testid="${status}"][data-state="done"]`, { state: "attached", timeout: 300_000 });

for (const mode of MODES) {
  test(`run=1 runs on open; embeds show the result first and lock every input, on ${mode.name}`, async () => {
    const b = await launch(mode);
    try {
      const { page } = b;
      await b.context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: new URL(srv.base).origin });

      // The embed snippet's link: runs by itself, result above the form, no share boxes.
      await page.setViewportSize({ width: 800, height: 600 });
      await page.goto(srv.base + link("dynamics", IZ) + "&run=1&embed=1&lock=1&hide=guided");
      await done(page, "dyn-status");
      const status = await page.locator('[data-testid="dyn-status"]').boundingBox();
      const form = await page.locator('[data-testid="dyn-experiment"]').boundingBox();
      assert.ok(status.y < form.y, `result (y ${status.y}) above the form (y ${form.y})`);
      assert.ok(status.y < 600, "the result starts inside an 800 × 600 frame");
      // First in the page's order too, so the keyboard and screen readers reach it first.
      assert.ok(await page.evaluate(() => {
        const [r, f] = ["dyn-status", "dyn-experiment"].map((id) => document.querySelector(`[data-testid="${id}"]`));
        return Boolean(r.compareDocumentPosition(f) & Node.DOCUMENT_POSITION_FOLLOWING);
      }), "the result precedes the form in the document");
      assert.equal(await page.$('[data-testid="dyn-share-link"]'), null, "no share box inside the embed");
      assert.equal(await page.$('[data-testid="dyn-embed-snippet"]'), null);
      assert.match(await page.getAttribute('[data-testid="dyn-open-full"]', "href"), /#\/dynamics\?spec=.*&run=1/);
      for (const id of ["dyn-kind", "dyn-ms", "dyn-seed", "dyn-spec-json", "dyn-guided-izhikevich"]) {
        assert.ok(await page.isDisabled(`[data-testid="${id}"]`), `${id} locked`);
      }
      await page.screenshot({ path: path.join(SHOTS, `embed-dynamics-run-${mode.name}.png`) });

      // A hand-made lock=1 on the Circuits lab (no hide=): the sweep runs once the link's model
      // has loaded, and nothing the link does not hold is left editable.
      await page.setViewportSize({ width: 1280, height: 900 });
      await page.goto(srv.base + link("circuits", IOI) + "&run=1&lock=1");
      await page.reload();
      await done(page, "patch-status");
      for (const id of ["patch-clean", "patch-target", "load-smollm2", "load-ioi-3l", "model-file"]) {
        assert.ok(await page.isDisabled(`[data-testid="${id}"]`), `${id} locked`);
      }
      for (const id of ["prompt-text", "prompt-ids", "generate-max", "analysis-answer", "scores-half", "ablation-kind"]) {
        assert.equal(await page.isVisible(`[data-testid="${id}"]`), false, `${id} out of reach when locked`);
      }

      // The full page: a plain link with run=1 runs; the share box's link runs too, and copies.
      await page.goto(srv.base + link("dynamics", IZ));
      await page.reload();
      await page.waitForSelector('[data-testid="dyn-run"]');
      await page.waitForTimeout(1500);
      assert.equal(await page.getAttribute('[data-testid="dyn-status"]', "data-state"), "idle", "no run=1: waits for Run");
      await page.click('[data-testid="dyn-run"]', { noWaitAfter: true });
      await done(page, "dyn-status");
      const shared = await page.inputValue('[data-testid="dyn-share-link"]');
      assert.match(shared, /&run=1$/);
      assert.match(await page.inputValue('[data-testid="dyn-embed-snippet"]'), /&run=1&embed=1&lock=1/);
      await page.click('[data-testid="dyn-copy-link"]');
      await page.waitForFunction(() => document.querySelector('[data-testid="dyn-copy-link"] + span')?.textContent.includes("copied"));
      assert.equal(await page.evaluate(() => navigator.clipboard.readText()), shared);
      await page.goto("about:blank");
      await page.goto(shared);
      await done(page, "dyn-status");

      assert.deepEqual(b.problems, []);
    } finally {
      await b.close();
    }
  });
}
