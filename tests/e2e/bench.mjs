// Benchmark (prints, asserts nothing), headless Chromium, both devices:
//  - navigation → first result of the start-up check (cold profile each time);
//  - SmolLM2-135M-Instruct, computed by the page's engine worker: load (fetch + parse +
//    dequantise + upload), a forward on the IOI prompt (the prompt's Run; first and again),
//    greedy generation of 32 tokens after it (tokens/s, the prompt's pass included, as in the
//    PyTorch `generate` peer), and the IOI resid_pre patching sweep (31 × 14; first and
//    again). The CPU twice: the engine with every core (the page is cross-origin isolated) and
//    with one thread (`?threads=1`).
import { MODES, serveDist, launch, ShellPage } from "./harness.mjs";

const VARIANTS = [
  ...MODES.map((m) => ({ ...m, query: "" })),
  { ...MODES.find((m) => m.name === "cpu"), name: "cpu, 1 thread", query: "?threads=1" },
];
const sweeps = {};

const srv = await serveDist();
const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// The start-up's phases, from the page's `performance.mark`s (ms since navigation).
const PHASES = ["start", "engine", "tokenizer", "check"];
for (const mode of MODES) {
  const runs = [];
  const phases = [];
  for (let i = 0; i < 3; i++) {
    const b = await launch(mode);
    const shell = new ShellPage(b.page);
    await shell.open(srv.base);
    await shell.waitStartup();
    runs.push(await shell.sinceNavigationMs());
    phases.push(await b.page.evaluate((names) => names.map((n) => performance.getEntriesByName(`interplay:${n}`)[0]?.startTime ?? NaN), PHASES));
    await b.close();
  }
  const at = PHASES.map((n, i) => `${n} ${med(phases.map((p) => p[i])).toFixed(0)}`).join(", ");
  console.log(`browser [${mode.name}] navigation → first result: ${med(runs).toFixed(0)} ms (median of ${runs.length}, cold profile each; ms since navigation at: ${at})`);
}

const SKIP_SMOLLM2 = process.env.INTERPLAY_BENCH_SKIP_SMOLLM2 === "1";
for (const mode of SKIP_SMOLLM2 ? [] : VARIANTS.filter((m) => !process.env.INTERPLAY_BENCH_MODE || m.name.startsWith(process.env.INTERPLAY_BENCH_MODE))) {
  const b = await launch(mode);
  const page = b.page;
  try {
    await page.goto(srv.base + mode.query + "#/circuits");
    await page.waitForSelector('[data-testid="device-indicator"][data-backend]:not([data-backend=""])', { timeout: 60_000 });
    let t = Date.now();
    await page.click('[data-testid="load-smollm2"]', { timeout: 600_000 });
    await page.waitForSelector('[data-testid="model-load"][data-state="idle"]:not([data-seq="0"])', { timeout: 600_000, state: "attached" });
    const load = Date.now() - t;
    if (await page.$('[data-testid="model-error"]')) throw new Error(await page.textContent('[data-testid="model-error"]'));
    // Timed in the page, from the click to the result in the document: Playwright's click and
    // polling add ~100 ms of their own, half a forward.
    const inPage = () => page.evaluate(() => new Promise((done) => {
      const status = () => document.querySelector('[data-testid="run-status"]');
      const seq = status().getAttribute("data-seq");
      const t0 = performance.now();
      const watch = new MutationObserver(() => {
        if (status().getAttribute("data-seq") !== seq && ["done", "error"].includes(status().getAttribute("data-state"))) {
          watch.disconnect();
          done(Math.round(performance.now() - t0));
        }
      });
      watch.observe(document.body, { subtree: true, attributes: true, childList: true });
      document.querySelector('[data-testid="run-prompt"]').click();
    }));
    const fwd = await inPage();
    const fwdAgain = await inPage();
    const top = await page.textContent('[data-testid="top-tokens"] tbody tr:first-child td:first-child');
    // The engine's own compute time of that run (the rest of the click-to-result time is the
    // messages to and from the worker and drawing the result).
    const engineMs = (await page.textContent('[data-testid="run-status"]')).match(/ in (\d+) ms/)?.[1] ?? "?";
    // Greedy decoding, 32 new tokens after the prompt (PyTorch's `generate` peer does the same).
    await page.fill('[data-testid="generate-max"]', "32");
    await page.click('[data-testid="generate-run"]', { timeout: 600_000 });
    await page.waitForSelector('[data-testid="generate-status"]:not([data-seq="0"]):is([data-state="done"], [data-state="error"])', { timeout: 900_000, state: "attached" });
    const gen = await page.$('[data-testid="generate-rate"]');
    const decode = gen
      ? `${await gen.getAttribute("data-tokens")} tokens in ${Number(await gen.getAttribute("data-ms")).toFixed(0)} ms, ${(Number(await gen.getAttribute("data-tokens")) / (Number(await gen.getAttribute("data-ms")) / 1e3)).toFixed(1)} tokens/s`
      : `failed: ${await page.textContent('[data-testid="generate-error"]')}`;
    t = Date.now();
    await page.click('[data-testid="patch-run"]', { timeout: 600_000 });
    await page.waitForSelector('[data-testid="patch-status"]:not([data-seq="0"]):is([data-state="done"], [data-state="error"])', { timeout: 900_000, state: "attached" });
    const sweep = Date.now() - t;
    // Again: the first includes the engine's first allocations at this size.
    const seq = await page.getAttribute('[data-testid="patch-status"]', "data-seq");
    t = Date.now();
    await page.click('[data-testid="patch-run"]', { timeout: 600_000 });
    await page.waitForSelector(`[data-testid="patch-status"]:not([data-seq="${seq}"]):is([data-state="done"], [data-state="error"])`, { timeout: 900_000, state: "attached" });
    const again = Date.now() - t;
    const clean = await page.textContent('[data-testid="clean-metric"]').catch(() => "?");
    const device = await page.textContent('[data-testid="device-indicator"]');
    sweeps[mode.name] = [sweep, again, fwd, fwdAgain];
    console.log(`browser [${mode.name}: ${device.trim()}] SmolLM2: load ${(load / 1e3).toFixed(1)} s; forward (IOI prompt, click to result) ${fwd} ms first, ${fwdAgain} ms again (the engine's part ${engineMs} ms), top token ${JSON.stringify(top)}; resid_pre sweep 31×14 ${(sweep / 1e3).toFixed(1)} s first, ${(again / 1e3).toFixed(1)} s again (clean logit diff ${clean}); greedy generate ${decode}`);
  } catch (e) {
    console.log(`browser [${mode.name}] SmolLM2 failed: ${e.message}`);
  } finally {
    await b.close();
  }
}
if (sweeps["cpu"] && sweeps["cpu, 1 thread"]) {
  const [all, one] = [sweeps["cpu"], sweeps["cpu, 1 thread"]];
  console.log(`browser [cpu] SmolLM2 sweep, every core / one thread: ${(all[1] / one[1]).toFixed(2)}× (first runs: ${(all[0] / one[0]).toFixed(2)}×); forward: ${(all[3] / one[3]).toFixed(2)}× (first: ${(all[2] / one[2]).toFixed(2)}×)`);
}
srv.server.close();
