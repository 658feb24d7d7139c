// The engine worker's loader. The page posts its wasm-bindgen glue's URL and its own compiled
// WebAssembly.Module; instantiating it runs the module's `main`, which sees a worker scope and
// takes over `onmessage` (see web/src/engine). Same origin only: the CSP's worker-src 'self'.
self.onmessage = async (event) => {
  self.onmessage = null;
  const { glue, module } = event.data;
  try {
    const bindings = await import(glue);
    await bindings.default({ module_or_path: module });
  } catch (e) {
    // Tell the page, which then computes itself.
    setTimeout(() => { throw e; });
  }
};
