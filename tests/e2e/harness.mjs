// Shared browser-test harness: serves dist/ under a sub-path, launches Debian's Chromium headless
// with or without WebGPU (SwiftShader), and records console errors, panics and every request
// so a test can fail on any of them.
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startServer } from "./serve.mjs";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";

export const PREFIX = "/courses/interp/";
export const MODES = [
  { name: "webgpu", args: ["--enable-unsafe-webgpu", "--enable-features=Vulkan"], backend: "wgpu" },
  { name: "cpu", args: [], backend: "cpu" },
];

const BASE_ARGS = [
  "--headless=new", "--no-sandbox", "--disable-background-networking", "--disable-component-update",
  "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage",
];

/// Serve dist/ — cross-origin isolated (the engine's CPU threads) unless `isolate: false`.
export async function serveDist({ isolate = true } = {}) {
  const dist = path.resolve(process.cwd(), "dist");
  if (!fs.existsSync(path.join(dist, "index.html"))) {
    throw new Error("dist/index.html is missing: run `cargo xtask build` first");
  }
  const server = await startServer({ dir: dist, port: 0, prefix: PREFIX, isolate });
  return { server, base: `http://127.0.0.1:${server.address().port}${PREFIX}` };
}

export async function launch(mode) {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "interplay-chromium-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [...BASE_ARGS, ...mode.args],
    viewport: { width: 1280, height: 900 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const problems = [];
  const requests = [];
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`console error: ${msg.text()}`);
    if (/panicked at/.test(msg.text())) problems.push(`panic: ${msg.text()}`);
  });
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("request", (req) => requests.push(req.url()));
  return {
    context, page, problems, requests,
    async close() {
      await context.close();
      fs.rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/// Page object for the app shell.
export class ShellPage {
  constructor(page) { this.page = page; }
  async open(url) { await this.page.goto(url); }
  async waitStartup(timeout = 120_000) {
    await this.page.waitForSelector('[data-testid="startup-status"][data-state="done"], [data-testid="startup-status"][data-state="error"]', { timeout, state: "attached" });
    const state = await this.page.getAttribute('[data-testid="startup-status"]', "data-state");
    if (state !== "done") {
      throw new Error("start-up failed: " + (await this.page.textContent('[data-testid="startup-error"]')));
    }
  }
  async backend() { return this.page.getAttribute('[data-testid="device-indicator"]', "data-backend"); }
  async tokenIds() {
    const ids = await this.page.getAttribute('[data-testid="startup-tokens"]', "data-ids");
    return ids.split(",").map(Number);
  }
  async maxError() { return Number(await this.page.textContent('[data-testid="startup-error-max"]')); }
  async checksum() { return Number(await this.page.textContent('[data-testid="startup-checksum"]')); }
  async sinceNavigationMs() { return parseFloat(await this.page.textContent('[data-testid="startup-since-nav"]')); }
  async switchTo(backend) { await this.page.selectOption('[data-testid="device-switch"]', backend); }
  async gotoLab(slug) { await this.page.click(`[data-testid="nav-${slug}"]`); }
}

/// SmolLM2's file (`cargo xtask setup` fetches it from PyPI).
export const SMOLLM2_PATH = path.resolve("public/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
export const HAS_SMOLLM2 = fs.existsSync(SMOLLM2_PATH);

/// `skip` for a SmolLM2 test: `false` when SmolLM2 is fetched, else why it is skipped — but under
/// CI (`CI` set) it is never skipped: the test runs and [`requireSmollm2`] fails it.
export function smollm2Skip() {
  if (HAS_SMOLLM2 || process.env.CI) return false;
  return "SmolLM2 is not fetched (cargo xtask fetch-models)";
}

/// The first line of a SmolLM2 test: fails it, with the reason, when SmolLM2 is missing.
export function requireSmollm2() {
  if (!HAS_SMOLLM2) throw new Error(`SmolLM2 missing (${SMOLLM2_PATH}): \`cargo xtask setup\` fetches it`);
}

/// Fail when any request left the page's origin.
export function offOrigin(requests, base) {
  const origin = new URL(base).origin;
  return requests.filter((u) => !u.startsWith(origin) && !u.startsWith("data:") && !u.startsWith("blob:"));
}


/// The Neurofeedback lab's SmolLM2 share link the browser tests run (CPU), and its short form
/// for SwiftShader, where a matmul costs the same for 1 to 64 rows.
export const NF_SMOLLM2 = {
  model: "smollm2", hook: "blocks.15.hook_resid_post", pooling: "mean",
  sentences: { bundled: "sentiment" },
  directions: ["pc1"], examples: [0, 2], seeds: [1], queries: 6, shuffled: false,
  labels: ["A", "B"], format: "chat", control: false,
  explicit: { max_tokens: 8, temperature: 0, samples: 1 },
};
// Each of these is 8 SmolLM2 tokens; with a concept label for each, half of either sentiment.
const EIGHT_BY_EIGHT = [
  "The soup was warm and tasted wonderful. | 1",
  "The soup was cold and tasted awful. | 0",
  "He finally passed his driving test today. | 1",
  "He failed his driving test again today. | 0",
  "The picnic in the sunshine was delightful. | 1",
  "She cried alone after the terrible news. | 0",
  "The doctor said the results were excellent. | 1",
  "The children were frightened by the thunder. | 0",
].join("\n");
export const NF_SMOLLM2_SHORT = {
  ...NF_SMOLLM2, sentences: { pasted: EIGHT_BY_EIGHT }, queries: 3, explicit: undefined,
};

/// Page object for the Circuits lab.
export class CircuitsPage {
  constructor(page) { this.page = page; }
  async open(base) {
    await this.page.goto(base + "#/circuits");
    await this.page.waitForSelector('[data-testid="lab-circuits"]');
    await this.page.waitForSelector('[data-testid="device-indicator"][data-backend]:not([data-backend=""])', { timeout: 60_000 });
  }
  async loadFiles(paths) {
    const seq = Number(await this.page.getAttribute('[data-testid="model-load"]', "data-seq"));
    await this.page.setInputFiles('[data-testid="model-file"]', paths);
    await this.page.waitForSelector(`[data-testid="model-load"][data-state="idle"]:not([data-seq="${seq}"])`, { timeout: 120_000, state: "attached" });
  }
  async loadError() {
    return (await this.page.$('[data-testid="model-error"]')) ? this.page.textContent('[data-testid="model-error"]') : null;
  }
  async runIds(ids, timeout) {
    await this.page.fill('[data-testid="prompt-ids"]', ids.join(","));
    return this.run(timeout);
  }
  async runText(text) {
    await this.page.fill('[data-testid="prompt-ids"]', "");
    await this.page.fill('[data-testid="prompt-text"]', text);
    return this.run();
  }
  async run(timeout = 120_000) {
    const seq = await this.page.getAttribute('[data-testid="run-status"]', "data-seq");
    await this.page.click('[data-testid="run-prompt"]');
    await this.page.waitForSelector(`[data-testid="run-status"]:not([data-seq="${seq}"]):is([data-state="done"], [data-state="error"])`, { timeout, state: "attached" });
    return this.page.getAttribute('[data-testid="run-status"]', "data-state");
  }
  /// Continue the prompt by `max` tokens (greedy unless the temperature box says otherwise).
  async generate(max, timeout = 120_000) {
    await this.page.fill('[data-testid="generate-max"]', String(max));
    const seq = await this.page.getAttribute('[data-testid="generate-status"]', "data-seq");
    await this.page.click('[data-testid="generate-run"]');
    await this.page.waitForSelector(`[data-testid="generate-status"]:not([data-seq="${seq}"]):is([data-state="done"], [data-state="error"])`, { timeout, state: "attached" });
    return this.page.getAttribute('[data-testid="generate-status"]', "data-state");
  }
  async generated() { return (await this.page.getAttribute('[data-testid="generate-tokens"]', "data-ids")).split(",").map(Number); }
  async generateError() { return this.page.textContent('[data-testid="generate-error"]'); }
  async lastLogits() { return JSON.parse(await this.page.textContent('[data-testid="last-logits"]')); }
  async runError() { return this.page.textContent('[data-testid="run-error"]'); }
}

export function maxRelErr(got, want) {
  let m = 0;
  for (let i = 0; i < want.length; i++) m = Math.max(m, Math.abs(got[i] - want[i]) / Math.max(1, Math.abs(want[i])));
  return m;
}

/// A lab whose whole experiment is one spec in the URL (`#/{lab}?spec=`), with a Run button and a
/// status element carrying data-seq/data-state/data-ms; test ids start with `prefix`.
class SpecLabPage {
  constructor(page, lab, prefix, runButton = "run") {
    Object.assign(this, { page, lab, prefix, runButton });
  }
  /// Open a share link for `spec` (a fresh load, so the lab reads the link) and wait for `backend`.
  async open(base, spec, backend) {
    await this.page.goto(base + `#/${this.lab}?spec=` + encodeURIComponent(JSON.stringify(spec)));
    await this.page.reload();
    await this.page.waitForSelector(`[data-testid="${this.prefix}${this.runButton}"]`);
    if (backend) {
      await this.page.waitForSelector(`[data-testid="device-indicator"][data-backend="${backend}"]`, { timeout: 120_000, state: "attached" });
    }
  }
  /// Click Run and wait until the run ends in `state` ("done" or "error"); returns its ms.
  async run(state = "done", timeout = 300_000) {
    const status = `[data-testid="${this.prefix}status"]`;
    const seq = await this.page.getAttribute(status, "data-seq");
    // Run rewrites the share link in the URL hash while the page computes: do not wait for that.
    await this.page.click(`[data-testid="${this.prefix}${this.runButton}"]`, { noWaitAfter: true });
    await this.page.waitForSelector(`${status}:not([data-seq="${seq}"]):is([data-state="done"], [data-state="error"])`, { timeout, state: "attached" });
    assert.equal(await this.page.getAttribute(status, "data-state"), state,
      state === "done" ? await this.page.textContent(status) : "");
    return Number(await this.page.getAttribute(status, "data-ms"));
  }
}

/// Page object for the Dynamics lab.
export class DynamicsPage extends SpecLabPage {
  constructor(page) { super(page, "dynamics", "dyn-"); }
}

/// Page object for the Merge lab.
export class MergePage extends SpecLabPage {
  constructor(page) { super(page, "merge", "merge-"); }
  /// The merged model's accuracy per task, from the result table.
  async merged() {
    return this.page.$$eval('[data-testid="merge-merged-row"] td', (tds) =>
      Object.fromEntries(tds.map((td) => [td.dataset.task, Number(td.dataset.value)])));
  }
  /// Every row of the result table: its model name and accuracy per task.
  async rows() {
    return this.page.$$eval('[data-testid="merge-table"] tbody tr', (trs) => trs.map((tr) => ({
      name: tr.querySelector("th").textContent,
      accuracy: Object.fromEntries([...tr.querySelectorAll("td")].map((td) => [td.dataset.task, Number(td.dataset.value)])),
    })));
  }
}

/// `interplay run` of `spec` (the dev build, as `cargo run` gives it): its `result`.
export function cliResult(spec) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "interplay-spec-"));
  const file = path.join(dir, "spec.json");
  fs.writeFileSync(file, JSON.stringify(spec));
  const out = execFileSync("cargo", ["run", "-q", "-p", "interplay-cli", "--", "run", file], { encoding: "utf8", maxBuffer: 256 << 20 });
  return JSON.parse(out).result;
}

/// The result the page's "Export JSON" button (inside `panel`) downloads: `{spec, result}`.
export async function exportedJson(page, panel) {
  const [dl] = await Promise.all([
    page.waitForEvent("download"),
    page.click(`[data-testid="${panel}"] button:has-text("Export JSON")`),
  ]);
  return JSON.parse(fs.readFileSync(await dl.path(), "utf8"));
}

/// Two JSON values equal: the same keys, strings and booleans, numbers within `rel` relative
/// or `abs` absolute (for values near zero). Returns the worst absolute difference.
export function sameJson(got, want, { rel = 1e-4, abs = 1e-5 } = {}, at = "result") {
  if (typeof want === "number" && typeof got === "number") {
    const d = Math.abs(got - want);
    assert.ok(d <= abs || d <= rel * Math.abs(want), `${at}: ${got} vs the CLI's ${want}`);
    return d;
  }
  if (Array.isArray(want)) {
    assert.ok(Array.isArray(got) && got.length === want.length, `${at}: ${JSON.stringify(got)?.slice(0, 200)} vs the CLI's ${JSON.stringify(want).slice(0, 200)}`);
    return want.reduce((m, w, i) => Math.max(m, sameJson(got[i], w, { rel, abs }, `${at}[${i}]`)), 0);
  }
  if (want && typeof want === "object") {
    assert.ok(got && typeof got === "object", `${at}: ${JSON.stringify(got)} vs an object`);
    assert.deepEqual(Object.keys(got).sort(), Object.keys(want).sort(), `${at}: keys`);
    return Object.keys(want).reduce((m, k) => Math.max(m, sameJson(got[k], want[k], { rel, abs }, `${at}.${k}`)), 0);
  }
  assert.deepEqual(got, want, at);
  return 0;
}
