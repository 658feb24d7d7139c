// Offline: from the first visit on the service worker serves the site (it caches every file at
// install), so with the network cut the page still starts and computes. And no request ever
// leaves the page's origin.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { MODES, PREFIX, serveDist, launch, ShellPage, CircuitsPage, offOrigin } from "./harness.mjs";
import { startServer } from "./serve.mjs";

let srv;
before(async () => { srv = await serveDist(); });
after(() => srv.server.close());

test("a page visited once works with the network off", async () => {
  const b = await launch(MODES[1]);
  try {
    const shell = new ShellPage(b.page);
    await shell.open(srv.base);
    await shell.waitStartup();
    // The worker is active once its install has cached the site: no second visit needed.
    await b.page.evaluate(() => navigator.serviceWorker.ready.then(() => true));
    await b.context.setOffline(true);
    await b.page.reload();
    await shell.waitStartup();
    assert.ok((await shell.maxError()) < 1e-4, "computed offline");

    // The bundled models came with the first visit: the page lists them and one runs offline.
    // SmolLM2, never loaded online, gets one plain sentence.
    await shell.gotoLab("circuits");
    await b.page.waitForSelector('[data-testid="offline-models"]');
    const offline = await b.page.textContent('[data-testid="offline-models"]');
    assert.match(offline, /Available offline in this browser: .*IOI/, offline);
    assert.doesNotMatch(offline, /SmolLM2/);
    const lab = new CircuitsPage(b.page);
    await b.page.click('[data-testid="load-smollm2"]');
    await b.page.waitForSelector('[data-testid="model-error"]', { timeout: 60_000 });
    assert.equal(await b.page.textContent('[data-testid="model-error"]'),
      "You are offline, and SmolLM2-135M-Instruct (Q4_1 GGUF) is not saved in this browser yet: load it once while online, and it stays available offline.");
    await b.page.click('[data-testid="load-ioi-3l"]');
    await b.page.waitForSelector('[data-testid="model-name"]:has-text("IOI")', { timeout: 60_000 });
    assert.equal(await lab.runText("When Mary and Tom went to the store, Tom gave a drink to"), "done", "a bundled model runs offline");
    assert.deepEqual(offOrigin(b.requests, srv.base), []);
  } finally {
    await b.context.setOffline(false);
    await b.close();
  }
});

// A returning student gets a rebuilt site's files: a new build renames the service worker's cache
// (so the old one is deleted) and bundled files are revalidated, never served stale.
test("a rebuilt site replaces the cached bundled files and the old cache", async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "interplay-site-"));
  // The built site without the 98 MB SmolLM2 folder, which this test does not need.
  fs.cpSync(path.resolve("dist"), tmp, { recursive: true, filter: (src) => !src.includes(`${path.sep}models${path.sep}`) && !src.endsWith(`${path.sep}models`) });
  const server = await startServer({ dir: tmp, port: 0, prefix: PREFIX });
  const base = `http://127.0.0.1:${server.address().port}${PREFIX}`;
  const b = await launch(MODES[1]);
  const file = "bundled/icl-3l/train.json";
  const read = () => b.page.evaluate((f) => fetch(f).then((r) => r.text()), file);
  const cacheNames = () => b.page.evaluate(() => caches.keys());
  try {
    const shell = new ShellPage(b.page);
    await shell.open(base);
    await shell.waitStartup();
    await b.page.evaluate(() => navigator.serviceWorker.ready.then(() => true));
    await b.page.reload();
    await shell.waitStartup();
    const before = await read();
    assert.equal(before, fs.readFileSync(path.join(tmp, file), "utf8"));
    const [oldCache] = (await cacheNames()).filter((n) => !n.startsWith("interplay-models"));
    assert.match(oldCache, /^interplay-[0-9a-f]{16}@\/courses\/interp\/$/, "the build stamped the cache name");
    // "Retrain" the bundled model and rebuild: the file changes, and so does the worker.
    const changed = JSON.stringify({ ...JSON.parse(before), retrained: "a new build" });
    fs.writeFileSync(path.join(tmp, file), changed);
    execFileSync("cargo", ["xtask", "stamp-sw", tmp], { stdio: "inherit" });
    await b.page.reload();
    await shell.waitStartup();
    // The visit finds the new worker; it installs (caching the rebuilt site), activates and
    // deletes the old cache. (Polled from here: waitForFunction does not await a promise.)
    await b.page.evaluate(() => navigator.serviceWorker.getRegistration().then((r) => r && r.update()));
    const deadline = Date.now() + 60_000;
    for (;;) {
      const names = (await cacheNames()).filter((n) => !n.startsWith("interplay-models"));
      if (names.length > 0 && !names.includes(oldCache)) break;
      assert.ok(Date.now() < deadline, `the old cache stayed: ${names.join(", ")}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    await b.page.reload();
    await shell.waitStartup();
    assert.equal(await read(), changed, "the page reads the rebuilt file");
    const names = (await cacheNames()).filter((n) => !n.startsWith("interplay-models"));
    assert.ok(!names.includes(oldCache), names.join(", "));
    assert.match(names[0] ?? "", /^interplay-[0-9a-f]{16}@/);
    assert.deepEqual(offOrigin(b.requests, base), []);
  } finally {
    await b.close();
    server.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
