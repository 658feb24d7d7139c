// Merge lab from a share link, on WebGPU and on the CPU fallback: a TIES merge of the bundled
// suite shows the CLI's per-task accuracies for the same spec; a short fine-tune in the page
// lowers its loss and a long one can be cancelled; bad input gives a message and the page stays
// usable. Screenshots go to target/screenshots/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { MODES, serveDist, launch, offOrigin, MergePage } from "./harness.mjs";

const SHOTS = path.resolve("target/screenshots");
export const TIES = {
  experiment: "merge", tasks: ["mirror", "flip", "rotate", "invert"], method: "ties",
  lambda: 1.0, density: 0.2, trim_scope: "global", sweep: [0.5, 1.0],
};

const NUMPY = JSON.parse(fs.readFileSync(path.resolve("tests/fixtures/merge/suite_golden.json"), "utf8"));
const TORCH_LINEAR = JSON.parse(fs.readFileSync(path.resolve("tests/fixtures/merge/adamerging_golden.json"), "utf8")).linearised;

// Task arithmetic of linearised fine-tunes, every model run in the tangent space of the base.
const LINEAR = {
  experiment: "merge", tasks: ["mirror", "flip", "rotate", "invert"], fine_tuning: "linearised",
  method: "task_arithmetic", lambda: 0.4,
};

function cli(spec) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "interplay-spec-"));
  const file = path.join(dir, "spec.json");
  fs.writeFileSync(file, JSON.stringify(spec));
  return JSON.parse(execFileSync("cargo", ["run", "-q", "-p", "interplay-cli", "--", "run", file], { encoding: "utf8" }));
}

let srv, cliTies, cliLinear;
before(async () => {
  srv = await serveDist();
  cliTies = cli(TIES).outcome;
  cliLinear = cli(LINEAR).outcome;
  fs.mkdirSync(SHOTS, { recursive: true });
});
after(() => srv.server.close());

for (const mode of MODES) {
  test(`Merge lab: a TIES share link matches the CLI, fine-tuning runs and cancels, on ${mode.name}`, async () => {
    const b = await launch(mode);
    try {
      const lab = new MergePage(b.page);
      await lab.open(srv.base, TIES, mode.backend);
      console.log(`[${mode.name}] TIES merge + evaluation in the page: ${(await lab.run()).toFixed(0)} ms`);
      const merged = await lab.merged();
      cliTies.columns.forEach((task, i) => {
        assert.ok(Math.abs(merged[task] - cliTies.merged[i]) < 1e-9, `${task}: page ${merged[task]} vs CLI ${cliTies.merged[i]}`);
      });
      // The merged model against the official TIES functions in NumPy (make_suite_goldens.py's
      // guided TIES: the same density, trim and λ).
      const numpyTies = NUMPY.guided.ties;
      for (const k of ["tasks", "method", "density", "trim_scope", "lambda"]) {
        assert.deepEqual(numpyTies.spec[k], TIES[k], `the golden's TIES spec differs in ${k}`);
      }
      for (const [task, want] of Object.entries(numpyTies.merged)) {
        assert.ok(Math.abs(merged[task] - want) < 1e-9, `merged on ${task}: page ${merged[task]} vs NumPy ${want}`);
      }
      // The base and fine-tuned rows against the NumPy float64 forward (make_suite_goldens.py).
      const rows = await lab.rows();
      for (const [model, name] of [["base", "base"], ...TIES.tasks.map((t) => [t, `fine-tuned on ${t}`])]) {
        const row = rows.find((r) => r.name === name);
        assert.ok(row, `no row ${name}: ${rows.map((r) => r.name)}`);
        for (const [task, want] of Object.entries(NUMPY.models[model])) {
          assert.ok(Math.abs(row.accuracy[task] - want.accuracy) < 1e-9, `${name} on ${task}: page ${row.accuracy[task]} vs NumPy ${want.accuracy}`);
        }
      }
      const mean = Number(await b.page.textContent('[data-testid="merge-mean"]'));
      assert.ok(Math.abs(mean - cliTies.mean_accuracy) < 1e-4);
      assert.equal(await b.page.locator('[data-testid="merge-sweep-table"] tbody tr').count(), 2);
      assert.match(await b.page.inputValue('[data-testid="merge-share-link"]'), /#\/merge\?spec=/);
      await b.page.screenshot({ path: path.join(SHOTS, `merge-ties-${mode.name}.png`), fullPage: true });

      // Bad input: a message, then the page still merges.
      await b.page.fill('[data-testid="merge-density"]', "0");
      await b.page.dispatchEvent('[data-testid="merge-density"]', "change");
      await b.page.click('[data-testid="merge-run"]');
      assert.match(await b.page.textContent('[data-testid="merge-input-error"]'), /density must be in/);
      await b.page.fill('[data-testid="merge-density"]', "0.2");
      await b.page.dispatchEvent('[data-testid="merge-density"]', "change");
      // An integer field refuses a fraction instead of rounding it.
      await b.page.selectOption('[data-testid="merge-method"]', "dare");
      await b.page.fill('[data-testid="merge-seed"]', "1.5");
      await b.page.dispatchEvent('[data-testid="merge-seed"]', "change");
      assert.match(await b.page.textContent('[data-testid="merge-input-error"]'), /DARE seed: enter a whole number/);
      await b.page.fill('[data-testid="merge-seed"]', "0");
      await b.page.dispatchEvent('[data-testid="merge-seed"]', "change");
      await b.page.selectOption('[data-testid="merge-method"]', "ties");
      // A λ sweep that is not a list blocks the run (it used to run the last valid sweep).
      await b.page.fill('[data-testid="merge-sweep"]', "0.1, x");
      await b.page.dispatchEvent('[data-testid="merge-sweep"]', "change");
      const seq = await b.page.getAttribute('[data-testid="merge-status"]', "data-seq");
      await b.page.click('[data-testid="merge-run"]');
      assert.match(await b.page.textContent('[data-testid="merge-input-error"]'), /Fix before running: λ sweep/);
      assert.equal(await b.page.getAttribute('[data-testid="merge-status"]', "data-seq"), seq);
      await b.page.fill('[data-testid="merge-sweep"]', "");
      await b.page.dispatchEvent('[data-testid="merge-sweep"]', "change");
      // A bad value in a field another method hides does not block that method's run.
      await b.page.fill('[data-testid="merge-density"]', "");
      await b.page.dispatchEvent('[data-testid="merge-density"]', "change");
      // Leave the field, as choosing another method with the mouse or keyboard does.
      await b.page.locator('[data-testid="merge-density"]').blur();
      assert.match(await b.page.textContent('[data-testid="merge-input-error"]'), /density/);
      await b.page.selectOption('[data-testid="merge-method"]', "task_arithmetic");
      assert.equal(await b.page.$('[data-testid="merge-input-error"]'), null);
      await b.page.selectOption('[data-testid="merge-method"]', "ties");
      await lab.run();

      // A short fine-tune: the loss falls epoch by epoch.
      await b.page.selectOption('[data-testid="ft-task"]', "rotate");
      await b.page.fill('[data-testid="ft-epochs"]', "2.5");
      await b.page.dispatchEvent('[data-testid="ft-epochs"]', "change");
      await b.page.click('[data-testid="ft-run"]');
      assert.match(await b.page.textContent('[data-testid="ft-input-error"]'), /Epochs: a whole number/);
      assert.equal(await b.page.getAttribute('[data-testid="merge-finetune"]', "data-state"), "idle");
      await b.page.fill('[data-testid="ft-epochs"]', "3");
      await b.page.dispatchEvent('[data-testid="ft-epochs"]', "change");
      await b.page.click('[data-testid="ft-run"]');
      await b.page.waitForSelector('[data-testid="merge-finetune"][data-state="done"]', { timeout: 300_000, state: "attached" });
      const losses = JSON.parse(await b.page.getAttribute('[data-testid="ft-losses"]', "data-losses"));
      console.log(`[${mode.name}] fine-tune losses ${losses.map((l) => l.toFixed(3)).join(", ")}`);
      assert.equal(losses.length, 3);
      assert.ok(losses[2] < losses[0], `loss did not fall: ${losses}`);
      assert.equal(await b.page.locator('[data-testid="ft-accuracy"] td').count(), 5);
      await b.page.screenshot({ path: path.join(SHOTS, `merge-finetune-${mode.name}.png`), fullPage: true });

      // Its task vector joins the merge (the run retrains it from the spec). CPU only: on
      // SwiftShader the retraining would add minutes.
      if (mode.backend === "cpu") {
        await b.page.click('[data-testid="ft-use"]');
        assert.equal(await b.page.locator('[data-testid="merge-page-finetunes"] li').count(), 1);
        await lab.run();
        assert.equal(await b.page.locator('[data-testid="merge-table"] tbody tr').count(), 7);
        assert.match(await b.page.textContent('[data-testid="merge-table"]'), /page fine-tune 1 on rotate/);
      }

      // A long one, cancelled after its first epoch: a message, the curve so far is kept.
      await b.page.fill('[data-testid="ft-epochs"]', "400");
      await b.page.dispatchEvent('[data-testid="ft-epochs"]', "change");
      await b.page.click('[data-testid="ft-run"]');
      await b.page.waitForSelector('[data-testid="ft-losses"]', { timeout: 120_000 });
      await b.page.click('[data-testid="ft-cancel"]');
      await b.page.waitForSelector('[data-testid="merge-finetune"][data-state="error"]', { timeout: 120_000, state: "attached" });
      assert.match(await b.page.textContent('[data-testid="ft-error"]'), /cancelled/);
      assert.ok(JSON.parse(await b.page.getAttribute('[data-testid="ft-losses"]', "data-losses")).length >= 1);

      // Linearised fine-tunes from a share link: the page runs them linearised, as the CLI does.
      await lab.open(srv.base, LINEAR, mode.backend);
      assert.equal(await b.page.inputValue('[data-testid="merge-fine-tuning"]'), "linearised");
      await lab.run();
      const lin = await lab.merged();
      cliLinear.columns.forEach((task, i) => {
        assert.ok(Math.abs(lin[task] - cliLinear.merged[i]) < 1e-9, `linearised ${task}: page ${lin[task]} vs CLI ${cliLinear.merged[i]}`);
      });
      // And against torch.func.jvp in float64 on the same spec (make_adamerging_goldens.py).
      for (const k of ["tasks", "fine_tuning", "method", "lambda"]) {
        assert.deepEqual(TORCH_LINEAR.spec[k], LINEAR[k], `the golden's linearised spec differs in ${k}`);
      }
      for (const [task, want] of Object.entries(TORCH_LINEAR.merged)) {
        assert.ok(Math.abs(lin[task] - want) < 1e-9, `linearised ${task}: page ${lin[task]} vs PyTorch ${want}`);
      }
      assert.match(await b.page.textContent('[data-testid="merge-table"]'), /fine-tuned on mirror \(linearised\)/);

      // Guided runs state the paper's claim and what the run shows, computed from it: adding
      // task vectors falls short of the paper here; the linearised sweep then compares with it.
      await b.page.click('[data-testid="merge-guided-add"]');
      await lab.run();
      const add = await b.page.locator('[data-testid="merge-finding"]');
      assert.equal(await add.getAttribute("data-agrees"), "false");
      assert.match(await add.textContent(), /The paper: .*This page's run: The best λ is 0\.50: mean accuracy 38\.7 %/);
      await b.page.click('[data-testid="merge-guided-linearised"]');
      await lab.run();
      const linear = await b.page.locator('[data-testid="merge-finding"]');
      assert.equal(await linear.getAttribute("data-agrees"), "true");
      assert.match(await linear.textContent(), /Linearised: mean accuracy 54\.9 % \(best λ 0\.40\); task arithmetic .* 38\.7 %/);
      await b.page.screenshot({ path: path.join(SHOTS, `merge-finding-${mode.name}.png`), fullPage: true });

      assert.deepEqual(offOrigin(b.requests, srv.base), []);
      assert.deepEqual(b.problems, []);
    } finally {
      await b.close();
    }
  });
}

test("a damaged Merge link says so and keeps a working lab", async () => {
  const b = await launch(MODES[MODES.length - 1]);
  try {
    await b.page.goto(srv.base + "#/merge?spec=%7Bnot-json");
    await b.page.reload();
    await b.page.waitForSelector('[data-testid="link-error"]');
    const lab = new MergePage(b.page);
    await lab.run();
    assert.deepEqual(b.problems, []);
  } finally {
    await b.close();
  }
});
