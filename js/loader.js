/*
 * Appended by `cargo xtask sdk` after wasm-bindgen's glue (with the module's `host.js`
 * inlined), inside the same function scope, so that none of it becomes a global of the
 * page. It uses the glue's `__wbg_get_imports` and `__wbg_finalize_init`.
 *
 * It fetches the module next to this script (footpath.js -> footpath.wasm), starts the
 * SDK, replaces the snippet's stub with the real command function and replays the
 * calls queued before loading, in order. Every call is wrapped in try/catch: whatever
 * happens inside the SDK, `ac(...)` never throws into the page.
 */
var footpathScript = document.currentScript;
(function (w) {
  var src = (footpathScript && footpathScript.src) || '';
  var name = w._footpathSdk || 'ac';
  // The glue's own `__wbg_init` (unused, so dropped by terser) handles inputs and
  // servers this script never meets; instantiating from bytes works whatever the
  // server's Content-Type.
  fetch(src.replace(/\.js(\?.*)?$/, '.wasm')).then(function (response) {
    return response.arrayBuffer();
  }).then(function (bytes) {
    return WebAssembly.instantiate(bytes, __wbg_get_imports());
  }).then(function (wasm) {
    __wbg_finalize_init(wasm.instance, wasm.module);
    // Timers, requests and page hiding call the module back through its `wake`.
    fp_init(wake);
    start(src);
    var stub = w[name];
    var queue = (stub && stub.q) || [];
    var ac = function () {
      try {
        // Flattened into `host.js`, so that the module takes only their count.
        command(fp_args(arguments));
      } catch (e) {
        try { console.error('[footpath] internal error', e); } catch (_) {}
      }
    };
    ac.l = stub && stub.l;
    ac.loaded = true;
    ac.state = function () { try { __footpath_state(); return fpState; } catch (_) { return {}; } };
    w[name] = ac;
    for (var i = 0; i < queue.length; i++) ac.apply(null, queue[i]);
  }, function (e) {
    try { console.error('[footpath] the SDK could not load', e); } catch (_) {}
  });
})(window);
