// The browser under the SDK, imported by `web/mod.rs`: the DOM, storage, cookie,
// timers and requests behind a few functions that take and return strings and
// numbers. Glue for each of these costs far less than one binding per DOM call.
//
// Rules: nothing here throws into the module (the SDK's state may be borrowed while
// it calls in), and `fpWake` is only ever called from a timer, an event or a promise,
// never synchronously from inside a call the module made.
//
// `cargo xtask sdk` inlines this file into the script's function scope (names starting
// with `fp` keep clear of wasm-bindgen's glue); tests load it as a module.

let fpWake;
// The current command's arguments, flattened in pre-order: kinds, and the texts and
// numbers of strings and numbers (sparse).
const fpKinds = [];
const fpTexts = [];
const fpNumbers = [];
// Functions of the page the SDK holds (handlers, callbacks), by handle.
const fpFunctions = {};
let fpLast = 0;

// `wake(kind, text)`: 1 flush timer, 2 inactivity timer, 3 page hidden, 4 collector's
// results, 5 refused, 6 retry later (text: Retry-After).
export function fp_init(wake) {
  fpWake = wake;
  const hide = () => fpWake(3, '');
  addEventListener('pagehide', hide);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState == 'hidden') hide();
  });
}

// Kinds: 0 undefined, 1 null, 2 false, 3 true, 4 number, 5 string, 6 function,
// 7 array, 8 object, 9 anything else; plus 16 × (handle | items | entries). An object's
// entries are a key (kind 5) and a value each. Only arguments may be functions, and
// nesting stops at three levels, which is all the commands look at.
function fpPut(value, depth) {
  const type = typeof value;
  const at = fpKinds.push(9) - 1;
  let kind = 9;
  let count = 0;
  if (value === undefined) kind = 0;
  else if (value === null) kind = 1;
  else if (type == 'boolean') kind = value ? 3 : 2;
  else if (type == 'number') {
    kind = 4;
    fpTexts[at] = String(value);
    fpNumbers[at] = value;
  } else if (type == 'string') {
    kind = 5;
    fpTexts[at] = value;
  } else if (type == 'function') {
    if (!depth) {
      kind = 6;
      count = ++fpLast;
      fpFunctions[count] = value;
    }
  } else if (type == 'object' && depth < 3) {
    const keys = Array.isArray(value) ? 0 : Object.keys(value);
    kind = keys ? 8 : 7;
    count = (keys || value).length;
    for (let i = 0; i < count; i++) {
      if (keys) fpPut(keys[i], depth + 1);
      fpPut(value[keys ? keys[i] : i], depth + 1);
    }
  }
  fpKinds[at] = kind + count * 16;
}

export function fp_args(list) {
  fpKinds.length = fpTexts.length = fpNumbers.length = 0;
  try {
    for (let i = 0; i < list.length; i++) fpPut(list[i], 0);
  } catch (e) {
    // A throwing getter or a proxy: the command sees fewer arguments and says so.
  }
  return fpKinds.length;
}

export function fp_kind(i) {
  return fpKinds[i];
}

export function fp_text(i) {
  return fpTexts[i];
}

export function fp_number(i) {
  return fpNumbers[i];
}

// Calls a held function: 0 `f()`, 1 `f({sessionId})`, 2 `f({command, message})`,
// 3 `f(null, {id})`, 4 `f(Error)`; + 8 lets the handle go first.
export function fp_call(handle, kind, a, b) {
  const f = fpFunctions[handle];
  if (kind & 8) delete fpFunctions[handle];
  try {
    f.apply(null, [[], [{ sessionId: a }], [{ command: a, message: b }], [null, { id: a }], [new Error(a)]][kind & 7]);
  } catch (e) {}
}

export function fp_free(handle) {
  delete fpFunctions[handle];
}

export function fp_same(a, b) {
  return fpFunctions[a] === fpFunctions[b];
}

export function fp_state(visitorId, sessionId, queued) {
  const state = {};
  if (queued >= 0) {
    state.visitorId = visitorId;
    if (sessionId) state.sessionId = sessionId;
    state.queued = queued;
  }
  return state;
}

export function fp_error(text) {
  console.error(text);
}

export function fp_origin(url) {
  try {
    return new URL(url).origin;
  } catch (e) {
    return '';
  }
}

export function fp_now() {
  return Date.now();
}

// Every browser that runs WebAssembly has `crypto.getRandomValues`.
export function fp_random() {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

export function fp_load(key) {
  try {
    return localStorage.getItem(key);
  } catch (e) {}
}

// An empty value removes the key. `localStorage` throws in some privacy modes.
export function fp_save(key, value) {
  try {
    value ? localStorage.setItem(key, value) : localStorage.removeItem(key);
  } catch (e) {}
}

// Sets a cookie (adding `Secure` on https) unless `set` is empty; returns the values
// of the cookies called `name`, joined by \x01.
export function fp_cookie(name, set) {
  try {
    if (set) document.cookie = set + (location.protocol == 'https:' ? '; Secure' : '');
    return document.cookie
      .split('; ')
      .filter((pair) => !pair.indexOf(name + '='))
      .map((pair) => pair.slice(name.length + 1))
      .join('\x01');
  } catch (e) {
    return '';
  }
}

// Page facts and context, joined by \x01: url, title, referrer, lang, keywords,
// navigator.language, screen width, height, density, viewport width, height, then
// the value (or '') of each query parameter in `names`. The URL is `location`
// resolved against the page's (or the page's own for ''), without the `excluded`
// parameters, without the fragment unless `keep`. Undefined when it is not a URL.
export function fp_page(location, names, excluded, keep) {
  try {
    const d = document;
    const url = new URL(location, d.location.href);
    const params = url.searchParams;
    const values = names.split('\x01').map((name) => params.get(name) || '');
    for (const name of excluded.split('\x01')) if (name) params.delete(name);
    if (!keep) url.hash = '';
    const meta = d.querySelector('meta[name=keywords]');
    const s = screen;
    return [
      url.href,
      d.title,
      d.referrer,
      d.documentElement.getAttribute('lang') || '',
      (meta && meta.getAttribute('content')) || '',
      navigator.language,
      s.width,
      s.height,
      Math.round(devicePixelRatio * 100),
      innerWidth,
      innerHeight,
    ]
      .concat(values)
      // The separator must not occur inside a field: `?q=a%01b` would shift every
      // later field by one.
      .map((v) => ('' + v).replace(/\x01/g, ''))
      .join('\x01');
  } catch (e) {}
}

// A string body goes out as text/plain, which needs no CORS preflight.
export function fp_beacon(url, body) {
  try {
    return navigator.sendBeacon(url, body);
  } catch (e) {
    return false;
  }
}

// `fetch` with keepalive, answered later through wake: 4 with `id\x01[!error]\x01...`
// when the collector judged each event, 5 with its message when it refused the batch,
// 6 with Retry-After ('' when absent) for 429, 5xx and network failures.
export function fp_post(url, body, keepalive) {
  Promise.resolve()
    .then(() => fetch(url, { method: 'POST', body, mode: 'cors', credentials: 'omit', keepalive }))
    .then(
      (response) => {
        const status = response.status;
        if (status == 429 || status > 499) return fpWake(6, response.headers.get('retry-after') || '');
        return response
          .json()
          .catch(() => null)
          .then((json) => {
            const results = json && json.results;
            if (((status > 199 && status < 300) || status == 400) && Array.isArray(results)) {
              fpWake(4, results.map((r) => (r = Object(r)).id + '\x01' + (r.error == null ? '' : '!' + r.error)).join('\x01'));
            } else {
              fpWake(5, '' + ((json && json.message) || 'no details'));
            }
          });
      },
      () => fpWake(6, ''),
    );
}

export function fp_timer(which, ms) {
  return setTimeout(() => fpWake(which, ''), ms);
}

export function fp_clear(id) {
  clearTimeout(id);
}
