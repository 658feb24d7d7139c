// Edge attribution patching in the page, on WebGPU and on the CPU fallback: a share link opens the
// edge panel; the run loads the gradients engine, and its EAP-IG scores and the top edges' exact
// effects match PyTorch's (tests/fixtures/make_eap_goldens.py), its circuits' metrics and
// correlation those of the CLI running the same spec. On the CPU, the guided experiment on SmolLM2
// against PyTorch's scores and circuits.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { MODES, serveDist, launch, CircuitsPage, offOrigin, smollm2Skip, requireSmollm2 } from "./harness.mjs";

const FIX = path.resolve("tests/fixtures");
const MODEL = path.join(FIX, "tiny-llama", "model.gguf");
const GOLDEN = JSON.parse(fs.readFileSync(path.join(FIX, "eap", "golden.json"), "utf8"));
const eap = GOLDEN.models["tiny-llama"];
const SPEC = {
  lab: "circuits", experiment: "edge-attribution", model: "model.gguf",
  clean: eap.clean, corrupt: eap.corrupt, answer: eap.answer, wrong: eap.wrong,
  method: "eap-ig", steps: GOLDEN.steps, top: 12,
};
const SHOTS = path.resolve("target/screenshots");

function cli() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "interplay-spec-"));
  const spec = path.join(dir, "spec.json");
  fs.writeFileSync(spec, JSON.stringify(SPEC));
  const out = execFileSync("cargo", ["run", "-q", "-p", "interplay-cli", "--", "run", spec, "--model", MODEL], { encoding: "utf8" });
  return JSON.parse(out).result;
}

/** The page's top-edge rows: {from, to, score, exact}. */
async function topRows(page) {
  return page.$$eval('[data-testid="edges-top"] tbody tr', (rows) => rows.map((r) => ({
    from: r.dataset.from, to: r.dataset.to, score: Number(r.dataset.score), exact: Number(r.dataset.exact),
  })));
}

async function curveRows(page) {
  return page.$$eval('[data-testid="edges-curve-table"] tbody tr', (rows) => rows.map((r) => ({
    edges: Number(r.dataset.edges), connected: Number(r.dataset.connected), metric: Number(r.dataset.metric),
  })));
}

async function run(page, timeout) {
  const seq = await page.getAttribute('[data-testid="edges-status"]', "data-seq");
  await page.click('[data-testid="edges-run"]');
  await page.waitForSelector(`[data-testid="edges-status"]:not([data-seq="${seq}"]):is([data-state="done"], [data-state="error"])`, { timeout, state: "attached" });
  const err = await page.$('[data-testid="edges-error"]');
  assert.equal(await page.getAttribute('[data-testid="edges-status"]', "data-state"), "done", err ? await err.textContent() : "");
}

let srv, ours;
before(async () => { srv = await serveDist(); ours = cli(); fs.mkdirSync(SHOTS, { recursive: true }); });
after(() => srv.server.close());

for (const mode of MODES) {
  test(`edge attribution from a share link matches PyTorch and the CLI on ${mode.name}`, async () => {
    const b = await launch(mode);
    try {
      const page = b.page;
      const gradients = [];
      page.on("request", (r) => { if (r.url().includes("/gradients/")) gradients.push(r.url()); });
      await page.goto(srv.base + "#/circuits?spec=" + encodeURIComponent(JSON.stringify(SPEC)));
      const lab = new CircuitsPage(page);
      await page.waitForSelector('[data-testid="edges"]');
      assert.equal(await page.inputValue('[data-testid="edges-method"]'), "eap-ig", "the link set the method");
      assert.equal(await page.inputValue('[data-testid="edges-top-n"]'), "12");
      await lab.loadFiles([MODEL]);
      assert.deepEqual(gradients, [], "the gradients engine loads only when a run needs it");
      await run(page, 300_000);
      assert.ok(gradients.some((u) => u.endsWith(".wasm")), "the gradients engine's module was loaded");

      const rows = await topRows(page);
      assert.equal(rows.length, 12);
      const scale = Math.max(1, ...eap.eap_ig.flat().map(Math.abs));
      for (const [i, r] of rows.entries()) {
        const [u, v] = [eap.upstream.indexOf(r.from), eap.downstream.indexOf(r.to)];
        assert.ok(u >= 0 && v >= 0, `${r.from} → ${r.to} is an edge of PyTorch's graph`);
        assert.ok(Math.abs(r.score - eap.eap_ig[u][v]) < 1e-3 * scale, `score ${r.from} → ${r.to}: ${r.score} vs PyTorch ${eap.eap_ig[u][v]}`);
        assert.ok(Math.abs(r.exact - eap.exact[u][v]) < 1e-3 * scale, `exact ${r.from} → ${r.to}: ${r.exact} vs PyTorch ${eap.exact[u][v]}`);
        assert.equal(r.from, ours.top[i].from, "the CLI ranks the same edges");
        assert.equal(r.to, ours.top[i].to);
      }
      const curve = await curveRows(page);
      assert.deepEqual(curve.map((p) => p.edges), ours.curve.map((p) => p.edges));
      for (const [i, p] of curve.entries()) {
        assert.ok(Math.abs(p.metric - ours.curve[i].metric) < 1e-3, `circuit of ${p.edges}: ${p.metric} vs CLI ${ours.curve[i].metric}`);
        assert.equal(p.connected, ours.curve[i].connected, `circuit of ${p.edges}: edges on a path`);
      }
      // Every edge kept is the clean run.
      assert.ok(Math.abs(curve.at(-1).metric - eap.clean_metric) < 1e-3);
      assert.equal(await page.textContent('[data-testid="edges-correlation"]'), ours.correlation.toFixed(3));
      assert.equal(await page.textContent('[data-testid="edges-count"]'), String(ours.edges));
      assert.equal(await page.locator('[data-testid="edges-circuit"] path').count(), 12, "the circuit draws every top edge");
      const share = decodeURIComponent(await page.inputValue('[data-testid="edges-share-link"]'));
      assert.match(share, /"experiment":"edge-attribution"/);
      await page.locator('[data-testid="edges"]').screenshot({ path: path.join(SHOTS, `edges-${mode.name}.png`) });

      assert.deepEqual(offOrigin(b.requests, srv.base), []);
      assert.deepEqual(b.problems, []);
    } finally {
      await b.close();
    }
  });
}

// The guided experiment on the CPU: Set up loads SmolLM2 and the IOI pair; the top edges' scores
// are PyTorch's, and the circuits of 10 to 10,000 edges give PyTorch's faithfulness (the numbers
// its text quotes).
test("the guided edge experiment on SmolLM2 gives PyTorch's scores and circuits", { skip: smollm2Skip() }, async () => {
  requireSmollm2();
  const ref = GOLDEN.models.smollm2;
  const b = await launch(MODES.find((m) => m.name === "cpu"));
  try {
    const page = b.page;
    await page.goto(`${srv.base}#/circuits`);
    await page.waitForSelector('[data-testid="device-indicator"][data-backend]:not([data-backend=""])', { timeout: 60_000 });
    const seq = await page.getAttribute('[data-testid="model-load"]', "data-seq");
    await page.click('[data-testid="guide-edges-setup"]');
    await page.waitForSelector(`[data-testid="model-load"][data-state="idle"]:not([data-seq="${seq}"])`, { timeout: 600_000, state: "attached" });
    assert.equal(await page.inputValue('[data-testid="edges-method"]'), "eap-ig");
    await run(page, 600_000);
    const scale = Math.max(...ref.edges.map((e) => Math.abs(e[3])));
    const listed = new Map(ref.edges.map((e) => [`${ref.upstream[e[0]]}>${ref.downstream[e[1]]}`, e[3]]));
    const rows = await topRows(page);
    assert.equal(rows.length, 20);
    for (const r of rows) {
      const want = listed.get(`${r.from}>${r.to}`);
      assert.ok(want !== undefined, `${r.from} → ${r.to} is among PyTorch's top edges`);
      assert.ok(Math.abs(r.score - want) < 1e-4 * scale, `${r.from} → ${r.to}: ${r.score} vs PyTorch ${want}`);
    }
    assert.equal(`${rows[0].from} → ${rows[0].to}`, "input → m0");
    const span = ref.clean_metric - ref.corrupt_metric;
    const curve = await curveRows(page);
    for (const c of ref.circuits) {
      const got = curve.find((p) => p.edges === c.n);
      assert.ok(got, `a circuit of ${c.n} edges`);
      // Scores equal to six digits at a boundary may order differently in the page than in
      // PyTorch, and one edge more or less moves a circuit's faithfulness: at the 1,000th edge by
      // 0.018 (0.852 here vs 0.834; the guide says so). Elsewhere the same as PyTorch.
      const tol = c.n === 1000 ? 0.025 : 0.002;
      assert.ok(Math.abs(got.metric - c.metric) / Math.abs(span) < tol, `${c.n} edges: ${got.metric} vs PyTorch ${c.metric}`);
    }
    await page.locator('[data-testid="edges"]').screenshot({ path: path.join(SHOTS, "edges-guided-cpu.png") });
    assert.deepEqual(offOrigin(b.requests, srv.base), []);
    assert.deepEqual(b.problems, []);
  } finally {
    await b.close();
  }
});
