// Footpath for sites built with a bundler: `install` does at run time what the inline
// snippet (snippet.js) does in a page. Nothing runs when this module is imported, so
// that it can be imported where there is no `window` (server-side rendering).

/**
 * Defines the global command function as a stub that queues its calls in `.q` (the
 * SDK replays them when it has loaded) and records the time in `.l`, then inserts one
 * async script for the SDK. A page that already has the global (the inline snippet, an
 * earlier call) gets nothing new, so the SDK is never loaded twice.
 *
 * @param {{ src: string, name?: string }} options
 * @returns {import('./index.d.mts').Ac} a function that forwards to the current global
 */
export function install({ src, name = 'ac' } = {}) {
  if (typeof window === 'undefined' || typeof document === 'undefined') {
    throw new Error(
      'footpath: install() needs a browser window; call it in the browser, not while rendering on the server',
    );
  }
  if (typeof src !== 'string' || src === '') {
    throw new TypeError("footpath: install() needs { src: 'https://collector.example/sdk/footpath.js' }");
  }
  const w = /** @type {any} */ (window);
  const d = document;
  if (typeof w[name] !== 'function') {
    // The same steps, in the same order, as the snippet: the loader reads the global's
    // name from `_footpathSdk` and the stub's queue from `.q`.
    w._footpathSdk = name;
    const stub = function () {
      (stub.q = stub.q || []).push(arguments);
    };
    w[name] = stub;
    stub.l = +new Date();
    const script = d.createElement('script');
    script.async = true;
    script.src = src;
    const first = d.getElementsByTagName('script')[0];
    if (first && first.parentNode) {
      first.parentNode.insertBefore(script, first);
    } else {
      (d.head || d.documentElement).appendChild(script);
    }
  }
  return forwarder(w, name);
}

// The SDK replaces the stub when it loads, so a caller that kept the stub itself would
// queue calls nobody replays: the forwarder always calls, and reads the properties of,
// whatever the global is now.
function forwarder(w, name) {
  const ac = function () {
    return w[name].apply(null, arguments);
  };
  for (const property of ['q', 'l', 'loaded', 'state']) {
    Object.defineProperty(ac, property, {
      get: () => (w[name] || {})[property],
      enumerable: true,
    });
  }
  return ac;
}
