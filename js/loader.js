/*
 * Appended by `cargo xtask sdk` after wasm-bindgen's glue, inside the same function
 * scope, so that the glue's `wasm_bindgen` never becomes a global of the page.
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
  wasm_bindgen({ module_or_path: src.replace(/\.js(\?.*)?$/, '.wasm') }).then(function () {
    wasm_bindgen.start(src);
    var stub = w[name];
    var queue = (stub && stub.q) || [];
    var ac = function () {
      try {
        wasm_bindgen.command(Array.prototype.slice.call(arguments));
      } catch (e) {
        try { console.error('[footpath] internal error', e); } catch (_) {}
      }
    };
    ac.l = stub && stub.l;
    ac.loaded = true;
    ac.state = function () { try { return wasm_bindgen.__footpath_state(); } catch (_) { return {}; } };
    w[name] = ac;
    for (var i = 0; i < queue.length; i++) ac.apply(null, queue[i]);
  }, function (e) {
    try { console.error('[footpath] the SDK could not load', e); } catch (_) {}
  });
})(window);
