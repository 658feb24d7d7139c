// Dynamics benchmark in the page (prints, asserts nothing), headless Chromium, both devices:
// the CLI contract's three runs (Mackey-Glass ESN 500 units × 10 000 steps, memory capacity,
// the Izhikevich 2003 network for 1 s), opened as share links; the page reports its own time.
// The CPU with every core (isolated page) and with one thread (`?threads=1`).
import { MODES, serveDist, launch, DynamicsPage } from "./harness.mjs";

const SPECS = {
  "esn mackey-glass (500 units, 10k steps)": {
    experiment: "prediction", task: "mackey-glass", steps: 10000, train: 5000, test: 2000, warmup: 100, ridge: 1e-7,
    reservoir: { units: 500, spectral_radius: 0.9, leak: 0.3, input_scaling: 1.0, seed: 42 },
  },
  "memory capacity (100 units, k ≤ 50)": { experiment: "memory-capacity" },
  "izhikevich 1000 neurons × 1000 ms": { experiment: "spiking", ms: 1000, seed: 1, raster: true },
  "izhikevich 10 000 neurons × 100 synapses × 1000 ms": {
    experiment: "spiking", ms: 1000, seed: 1, raster: true, excitatory: 8000, inhibitory: 2000,
    synapses_per_neuron: 100, weight_exc: 4.0, weight_inh: 10.0,
  },
};

const VARIANTS = [
  ...MODES.map((m) => ({ ...m, query: "" })),
  { ...MODES.find((m) => m.name === "cpu"), name: "cpu, 1 thread", query: "?threads=1" },
];
const srv = await serveDist();
for (const mode of VARIANTS.filter((m) => !process.env.INTERPLAY_BENCH_MODE || m.name.startsWith(process.env.INTERPLAY_BENCH_MODE))) {
  const b = await launch(mode);
  try {
    const lab = new DynamicsPage(b.page);
    for (const [name, spec] of Object.entries(SPECS)) {
      await lab.open(srv.base + mode.query, spec, mode.backend);
      const ms = await lab.run("done", 600_000);
      const value = await b.page.evaluate(() => ["dyn-nrmse", "dyn-mc", "dyn-rate-exc", "dyn-realtime"]
        .map((id) => document.querySelector(`[data-testid="${id}"]`)?.textContent).filter(Boolean).join(" "));
      console.log(`browser [${mode.name}] ${name}: ${ms.toFixed(0)} ms (${value})`);
    }
  } catch (e) {
    console.log(`browser [${mode.name}] dynamics bench failed: ${e.message}`);
  } finally {
    await b.close();
  }
}
srv.server.close();
