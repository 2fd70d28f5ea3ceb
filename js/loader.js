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
  // Pages written for the Journey SDK name their global through
  // `_genesysJourneySdk`; it works the same.
  var name = w._footpathSdk || w._genesysJourneySdk || 'ac';
  // The glue's own `__wbg_init` (unused, so dropped by terser) handles inputs and
  // servers this script never meets; instantiating from bytes works whatever the
  // server's Content-Type.
  fetch(src.replace(/\.js(\?.*)?$/, '.wasm')).then(function (response) {
    return response.arrayBuffer();
  }).then(function (bytes) {
    return WebAssembly.instantiate(bytes, __wbg_get_imports());
  }).then(function (wasm) {
    __wbg_finalize_init(wasm.instance, wasm.module);
    // Timers, requests and page hiding call the module back through its `wake`;
    // `host.js` hands the commands it has read to its `command`.
    fp_init(wake, command, src);
    var stub = w[name];
    var queue = (stub && stub.q) || [];
    var ac = function () {
      try {
        var command_name = arguments[0];
        if (command_name == 'load' || command_name == 'forms:track' || command_name == 'session') plugin([].slice.call(arguments));
        // Read and checked by `host.js`, which hands the module what it needs.
        else fp_ac(arguments);
      } catch (e) {
        try { console.error('[footpath] internal error', e); } catch (_) {}
      }
    };
    // The plugin module (`sdk-plugins`: autotrack plugins, form tracking, the
    // session reference), next to this script, fetched at the first call that needs
    // it, so that a page that makes none downloads nothing more. Its calls run in
    // order once it is there; it records through `ac` itself, and its refusals go to
    // the core as the command with the message, which the core reports.
    var plugins;
    var refuse = function (name, message) {
      fp_ac([name, message]);
    };
    var plugin = function (args) {
      var base = src.replace(/\.js(\?.*)?$/, '-plugins.');
      plugins = plugins || import(base + 'js').then(function (module) {
        return module.default({ module_or_path: base + 'wasm' }).then(function () { return module; });
      });
      // A module that could not load, or a call that threw in it, is reported; nothing
      // reaches the page as an unhandled rejection.
      plugins.then(function (module) {
        module.run(ac, refuse, args);
      }).catch(function (e) {
        refuse(args[0], 'the plugin module failed: ' + e);
      });
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
