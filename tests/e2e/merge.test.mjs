// Merge lab from a share link, on WebGPU and on the CPU fallback: a TIES merge of the bundled
// suite shows the CLI's per-task accuracies for the same spec; a short fine-tune in the page
// gives PyTorch's losses and accuracies for the same training and a long one can be cancelled;
// bad input gives a message and the page stays usable; the guided findings quote the goldens'
// numbers. Screenshots go to target/screenshots/.
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
const TORCH = JSON.parse(fs.readFileSync(path.resolve("tests/fixtures/merge/adamerging_golden.json"), "utf8"));
const TORCH_LINEAR = TORCH.linearised;
// The fine-tune panel's run below (rotate, 3 epochs, the panel's other options as it opens) in
// PyTorch float64: the seeded minibatch order restated, torch.optim.Adam (make_adamerging_goldens.py).
const TORCH_PANEL = TORCH.fine_tunes.find((r) => r.task === "rotate" && r.options.epochs === 3 && !r.options.linearised);

// What the guided findings quote, derived from the goldens: each sweep's best λ (the first of
// equal means over the merged tasks), percentages to 0.1 as the findings print them.
const pct = (v) => (100 * v).toFixed(1);
const mean4 = (acc) => TIES.tasks.reduce((sum, t) => sum + acc[t], 0) / TIES.tasks.length;
const bestOf = (rows) => rows.reduce((b, r) => (b && mean4(b.accuracy) >= mean4(r.accuracy) ? b : r), null);
/// The numbers a text quotes, in order; a sentence's full stop dropped.
const numbers = (text) => (text.match(/-?\d[\d.]*/g) ?? []).map((n) => n.replace(/\.$/, ""));

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
      // The panel's other options are the golden's (TrainOptions::fine_tune, standard).
      assert.ok(TORCH_PANEL, "no golden for the panel's run");
      assert.equal(Number(await b.page.inputValue('[data-testid="ft-lr"]')), TORCH_PANEL.options.lr);
      assert.equal(Number(await b.page.inputValue('[data-testid="ft-batch"]')), TORCH_PANEL.options.batch);
      assert.equal(Number(await b.page.inputValue('[data-testid="ft-seed"]')), TORCH_PANEL.options.seed);
      assert.equal(await b.page.isChecked('[data-testid="ft-linearised"]'), TORCH_PANEL.options.linearised);
      await b.page.click('[data-testid="ft-run"]');
      await b.page.waitForSelector('[data-testid="merge-finetune"][data-state="done"]', { timeout: 300_000, state: "attached" });
      const losses = JSON.parse(await b.page.getAttribute('[data-testid="ft-losses"]', "data-losses"));
      // Each epoch's mean loss against PyTorch float64 (the loss falls: 6.1, 1.6, 0.92).
      assert.equal(losses.length, TORCH_PANEL.losses.length);
      const lossErr = Math.max(...losses.map((l, i) => Math.abs(l - TORCH_PANEL.losses[i]) / TORCH_PANEL.losses[i]));
      console.log(`[${mode.name}] fine-tune losses ${losses.map((l) => l.toFixed(4)).join(", ")}; worst error vs PyTorch rel ${lossErr.toExponential(1)}`);
      losses.forEach((l, i) => {
        const want = TORCH_PANEL.losses[i];
        assert.ok(Math.abs(l - want) <= 1e-4 * want, `epoch ${i + 1} loss: page ${l} vs PyTorch ${want}`);
      });
      assert.ok(losses[2] < losses[0], `loss did not fall: ${losses}`);
      // The fine-tuned model's accuracy per task, as the page prints it (0.1 %; k/450 is never
      // a tie), against PyTorch's.
      const ftAcc = await b.page.$$eval('[data-testid="ft-accuracy"]', ([t]) => {
        const names = [...t.querySelectorAll("thead th")].map((th) => th.textContent);
        const cells = [...t.querySelectorAll("tbody td")].map((td) => td.textContent);
        return Object.fromEntries(names.map((n, i) => [n, cells[i]]));
      });
      assert.deepEqual(Object.keys(ftAcc).sort(), Object.keys(TORCH_PANEL.accuracy).sort());
      for (const [task, want] of Object.entries(TORCH_PANEL.accuracy)) {
        assert.equal(ftAcc[task], `${pct(want)}%`, `fine-tuned on ${task}: page ${ftAcc[task]} vs PyTorch ${want}`);
      }
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
      // The epochs done are kept; the first ones are the same training as above (one seeded
      // order per epoch, Adam's step count), so PyTorch's losses again.
      const kept = JSON.parse(await b.page.getAttribute('[data-testid="ft-losses"]', "data-losses"));
      assert.ok(kept.length >= 1);
      console.log(`[${mode.name}] cancelled with ${kept.length} epoch(s) kept: ${kept.slice(0, 3).map((l) => l.toFixed(4)).join(", ")}`);
      kept.slice(0, TORCH_PANEL.losses.length).forEach((l, i) => {
        const want = TORCH_PANEL.losses[i];
        assert.ok(Math.abs(l - want) <= 1e-4 * want, `cancelled run, epoch ${i + 1} loss: page ${l} vs PyTorch ${want}`);
      });

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
      // Every number the page quotes is the goldens' (NumPy's task arithmetic sweep and models,
      // torch.func.jvp's linearised sweep), and each verdict follows from them.
      const standard = bestOf(NUMPY.guided.add.sweep);
      const own = mean4(Object.fromEntries(TIES.tasks.map((t) => [t, Math.max(...TIES.tasks.map((m) => NUMPY.models[m][t].accuracy))])));
      const share = mean4(standard.accuracy) / own;
      await b.page.click('[data-testid="merge-guided-add"]');
      await lab.run();
      const add = await b.page.locator('[data-testid="merge-finding"]');
      const addShows = await add.locator("p").nth(1).textContent();
      assert.match(await add.locator("p").nth(0).textContent(), /^The paper: /);
      assert.match(addShows, /^This page's run: The best λ is /);
      assert.deepEqual(numbers(addShows), [standard.lambda.toFixed(2), pct(mean4(standard.accuracy)), "4", pct(own),
        (100 * share).toFixed(0), pct(standard.accuracy.digits), pct(NUMPY.models.base.digits.accuracy)], addShows);
      assert.equal(await add.getAttribute("data-agrees"), String(share >= 0.8));
      assert.match(addShows, /The best λ is 0\.50: mean accuracy 38\.7 %/);
      const linBest = bestOf(TORCH_LINEAR.sweep);
      await b.page.click('[data-testid="merge-guided-linearised"]');
      await lab.run();
      const linear = await b.page.locator('[data-testid="merge-finding"]');
      const linShows = await linear.locator("p").nth(1).textContent();
      assert.deepEqual(numbers(linShows), [pct(mean4(linBest.accuracy)), linBest.lambda.toFixed(2), pct(mean4(standard.accuracy)),
        standard.lambda.toFixed(2), pct(linBest.accuracy.digits), pct(standard.accuracy.digits)], linShows);
      assert.equal(await linear.getAttribute("data-agrees"), String(mean4(linBest.accuracy) > mean4(standard.accuracy)));
      assert.match(linShows, /Linearised: mean accuracy 54\.9 % \(best λ 0\.40\); task arithmetic .* 38\.7 %/);
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
