// Benchmark (prints, asserts nothing): navigation → first result in headless Chromium, per device.
import { MODES, serveDist, launch, ShellPage } from "./harness.mjs";

const srv = await serveDist();
for (const mode of MODES) {
  const runs = [];
  for (let i = 0; i < 3; i++) {
    const b = await launch(mode);
    const shell = new ShellPage(b.page);
    const t0 = Date.now();
    await shell.open(srv.base);
    await shell.waitStartup();
    runs.push({ wall: Date.now() - t0, page: await shell.sinceNavigationMs(), backend: await shell.backend() });
    await b.close();
  }
  const med = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(`${mode.name.padEnd(7)} (${runs[0].backend}): navigation → first result ${med(runs.map((r) => r.page)).toFixed(0)} ms (median of ${runs.length}, cold profile each)`);
}
srv.server.close();
