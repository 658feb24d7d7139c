// Offline: after one visit the service worker serves the site, so with the network cut the page
// still starts and computes. And no request ever leaves the page's origin.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { MODES, serveDist, launch, ShellPage, offOrigin } from "./harness.mjs";

let srv;
before(async () => { srv = await serveDist(); });
after(() => srv.server.close());

test("a visited page works with the network off", async () => {
  const b = await launch(MODES[1]);
  try {
    const shell = new ShellPage(b.page);
    await shell.open(srv.base);
    await shell.waitStartup();
    await b.page.evaluate(() => navigator.serviceWorker.ready.then(() => true));
    // Second visit under the worker's control caches everything the page loads.
    await b.page.reload();
    await shell.waitStartup();
    await b.context.setOffline(true);
    await b.page.reload();
    await shell.waitStartup();
    assert.ok((await shell.maxError()) < 1e-4, "computed offline");
    assert.deepEqual(offOrigin(b.requests, srv.base), []);
  } finally {
    await b.context.setOffline(false);
    await b.close();
  }
});
