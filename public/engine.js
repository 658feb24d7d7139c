// The engine worker's loader. The page posts the engine module's wasm-bindgen glue URL
// (`engine/engine-<hash>.js`, beside its `_bg.wasm`) and how many CPU threads to use.
// Instantiating the module runs its `main`, which sees this worker and takes over `onmessage`
// (see web/src/engine). Same origin only (the CSP's worker-src 'self' blob:, blob: for the
// thread pool's workers).
//
// Threads: where the page is cross-origin isolated (SharedArrayBuffer) and asks for more than
// one, the engine is the threaded build in `threads/` (shared memory, a rayon pool of workers);
// if that cannot load, the single-threaded engine runs, and the engine says why.
self.onmessage = async (event) => {
  self.onmessage = null;
  const { glue, threads, channel } = event.data;
  // Where the engine reports a panic on any of its threads (the threaded build has several).
  self.interplayPanicChannel = channel;
  self.interplayThreads = 1;
  self.interplayThreadsNote = null;
  if (threads > 1 && !self.crossOriginIsolated) {
    self.interplayThreadsNote = "host does not allow threads";
  } else if (threads > 1) {
    try {
      self.interplayThreads = threads;
      const threaded = await import(new URL("threads/engine.js", self.location.href).href);
      await threaded.default();
      return;
    } catch (e) {
      self.interplayThreads = 1;
      self.interplayThreadsNote = `threads unavailable: ${e?.message ?? e}`;
    }
  }
  try {
    const bindings = await import(glue);
    await bindings.default();
  } catch (e) {
    // Tell the page, which then computes itself.
    setTimeout(() => { throw e; });
  }
};
