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

// `wake(kind, text)`: 1 retry timer, 2 inactivity timer, 4 the collector's verdicts
// (see `fpSend`), 6 retry later (text: Retry-After or ''), 7 events dropped (as 4,
// each with the same error).
export function fp_init(wake) {
  fpWake = wake;
  // Chrome keeps no page that holds a Web Lock in its back/forward cache: the locks
  // go with the page and come back if it does.
  addEventListener('pagehide', () => {
    fpHide();
    fpHeld.map((release) => release());
    fpHeld = [];
  });
  addEventListener('pageshow', (event) => event.persisted && fpLock());
  addEventListener('online', fp_flush);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState == 'hidden') fpHide();
  });
}

// The send queue: the events of this page that the collector has not judged yet, each
// the text of a batch of one (`Tracked::text` in the module), oldest first. It lives
// here rather than in the module because this is cheaper in bytes, and its rules are
// few: it is saved in `localStorage` under this page's own key after every change, so
// that it outlives a reload, a crash or a closed tab, and the next page of the site
// adopts the keys of pages that are gone (`fp_setup`). Each event keeps its id through
// every retry and reload; the collector deduplicates by id.
let fpQueue = [];
let fpKey = '_footpath_q';
let fpUrl;
// The entries of the one request on its way (sends are one at a time, in order).
let fpSending;
// Waiting out a retry delay: only the module's retry timer (`fp_flush`) or the
// browser coming back online ends it.
let fpPaused;
let fpSoon;
let fpDropped = [];
const fpLocks = navigator.locks;
// Resolving these lets go of the locks this page holds.
let fpHeld = [];

function fpHold() {
  return new Promise((release) => fpHeld.push(release));
}

function fpLock() {
  if (fpLocks) fpLocks.request(fpKey, fpHold);
}

// At most 1,000 events and about 1 MB (UTF-16 units, one per byte of ASCII JSON): the
// oldest go first, and the module hears which (their callbacks get an error, the
// page's `on('error')` handlers one report per task). Events on their way stay, since
// the collector's verdict on them is coming: the queue is over the bound by at most
// one request until then.
function fpBound() {
  for (let size = fpQueue.join().length, i = 0; fpQueue[i] && (fpQueue.length > 1000 || size > 1e6); ) {
    const entry = fpQueue[i];
    if ((fpSending || []).includes(entry)) {
      i++;
      continue;
    }
    fpQueue.splice(i, 1);
    size -= entry.length + 1;
    if (fpDropped.push(fpId(entry)) < 2) {
      setTimeout(() => {
        fpWake(7, fpDropped.map((id) => id + '\x01!queue full: dropped ' + fpDropped.length + ' oldest events').join('\x01'));
        fpDropped = [];
      });
    }
  }
  fp_save(fpKey, fpQueue.join('\n'));
}

function fpId(entry) {
  return entry.substr(entry.indexOf('"events":[') + 17, 36);
}

// Up to `,"sentAt"`, comma included: inside a JSON string a quote is always escaped,
// so a deployment id such as `a"sentAt` cannot end the head early.
function fpHead(entry) {
  return entry.slice(0, entry.indexOf(',"sentAt"'));
}

// The longest run from the start of `list` that can go in one request: entries of the
// same deployment and visitor, at most 50 events (the collector takes 100) and 60,000
// bytes (browsers refuse keepalive requests and beacons over 64 KiB in flight). A
// first entry bigger than that goes alone, by plain fetch.
function fpTake(list) {
  const batch = [];
  let size = 0;
  for (const entry of list) {
    if (batch.length > 49 || fpHead(entry) != fpHead(list[0]) || ((size += new Blob([entry]).size) > 6e4 && batch[0])) break;
    batch.push(entry);
  }
  return batch;
}

// The batches of one merged into one, stamped with the time it is sent.
function fpBody(batch) {
  return fpHead(batch[0]) + ',"sentAt":' + Date.now() + ',"events":[' + batch.map((entry) => entry.slice(entry.indexOf('"events":[') + 10, -2)) + ']}';
}

// Sets the collector's batch URL, holds this page's key for as long as the page lives
// (a Web Lock, which the browser lets go even when the tab crashes), and adopts the
// queues of pages that are gone. Another live tab holds its own key's lock, so its
// events are never sent twice; two new pages cannot both take a dead page's events
// because the lock is taken `ifAvailable` and kept. Without Web Locks (old browsers,
// plain http) every other key is adopted: a live tab's events may then be sent twice,
// which the collector deduplicates. So may the events of a page that comes back from
// the back/forward cache after the next page adopted them.
export function fp_setup(url) {
  fpUrl = url;
  fpKey += fp_random();
  fpLock();
  try {
    for (const key of Object.keys(localStorage)) {
      if (!key.indexOf('_footpath_q') && key != fpKey) {
        const adopt = () => {
          const text = fp_load(key);
          if (text) {
            // Saved under this page's key before the dead page's key goes, so that a
            // crash in between loses nothing; and again after, in case the storage was
            // too full for both.
            fpQueue = text.split('\n').concat(fpQueue);
            fpBound();
            fp_save(key, '');
            fpBound();
            setTimeout(fpFlush);
          }
          return fpHold();
        };
        fpLocks ? fpLocks.request(key, { ifAvailable: true }, (lock) => lock && adopt()) : adopt();
      }
    }
  } catch (e) {}
}

// An event from the module: stored at once, sent within a second, or now when ten
// are waiting.
export function fp_queue(text) {
  fpQueue.push(text);
  fpBound();
  if (!fpSoon || fpQueue.length > 9) {
    clearTimeout(fpSoon);
    fpSoon = setTimeout(fpFlush, fpQueue.length > 9 ? 0 : 1e3);
  }
}

// The module's retry timer fired, or the browser is back online: resume at once.
export function fp_flush() {
  fpPaused = 0;
  fpFlush();
}

function fpFlush() {
  fpSoon = 0;
  if (!fpSending && !fpPaused && fpQueue[0]) fpSend((fpSending = fpTake(fpQueue)));
}

// One request, with keepalive when small enough so that it survives the page. The
// collector's answer goes to the module as `id\x01[!error]` for each event: its
// verdicts for 2xx (and 400 with results), the refusal's message for the other 4xx;
// these events are settled and leave the queue. An answer without usable results (a
// proxy's page, `"results"` not a list) settles them with its message or "no
// verdict". 429, 5xx and network failures keep them and ask the module how long to
// wait (with Retry-After for 429 and 503). So does a request or answer still
// incomplete after 30 s, which would otherwise hold up every later one, and anything
// that throws while the answer is read: whatever happens, `fpSending` is cleared.
function fpSend(batch) {
  const body = fpBody(batch);
  const retry = (after) => {
    fpSending = 0;
    fpPaused = 1;
    fpWake(6, after || '');
  };
  fetch(fpUrl, {
    method: 'POST',
    body,
    mode: 'cors',
    credentials: 'omit',
    keepalive: new Blob([body]).size < 6e4,
    signal: self.AbortSignal && AbortSignal.timeout && AbortSignal.timeout(3e4),
  })
    .then((response) => {
      const status = response.status;
      if (status == 429 || status > 499) return retry((status == 429 || status == 503) && response.headers.get('retry-after'));
      return response
        .json()
        .catch((error) => {
          // Not JSON (a proxy's page): no verdict, below. A body cut off or timed out
          // is a network failure.
          if (error.name != 'SyntaxError') throw error;
        })
        .then((json) => {
          const answer = Object(json);
          // Whatever `results` holds, a list to search: nothing below can throw.
          const results = [].concat(answer.results);
          const text = batch
            .map((entry) => {
              const id = fpId(entry);
              const result = results.find((r) => r && r.id == id);
              return id + '\x01' + (result ? (result.error == null ? '' : '!' + result.error) : '!' + (answer.message || 'no verdict'));
            })
            .join('\x01');
          fpSending = 0;
          fpQueue = fpQueue.filter((entry) => !batch.includes(entry));
          fpBound();
          fpWake(4, text);
          fpFlush();
        });
    })
    .catch(() => retry());
}

// The page is being hidden, left or closed: what is not on its way already goes out
// by beacon, as text/plain (no CORS preflight), in as many beacons as needed. The
// fate of a beacon is unknown, so its events stay in the queue: this page sends them
// again if it lives on (and then calls their callbacks), the next page if not; the
// collector keeps one copy of each. Leaving a page hides it first, then fires
// `pagehide`: what a beacon took at the first does not go again at the second, but
// what the browser refused (`sendBeacon` false, e.g. over its quota) is tried again.
let fpBeaconed = [];

// The queue's entries that are not on their way and not in `list`.
function fpIdle(list) {
  return fpQueue.filter((entry) => !(fpSending || []).includes(entry) && !list.includes(entry));
}

function fpHide() {
  let rest = fpIdle(fpBeaconed);
  try {
    for (let batch; rest[0] && navigator.sendBeacon(fpUrl, fpBody((batch = fpTake(rest)))); ) rest = rest.slice(batch.length);
  } catch (e) {}
  // Those still queued that a beacon took, now or before: all but what is left.
  fpBeaconed = fpIdle(rest);
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

// The test hook's state: empty before init (`started` false); `queued` counts this
// page's events that the collector has not judged yet.
export function fp_state(visitorId, sessionId, started) {
  const state = {};
  if (started) {
    state.visitorId = visitorId;
    if (sessionId) state.sessionId = sessionId;
    state.queued = fpQueue.length;
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

export function fp_timer(which, ms) {
  return setTimeout(() => fpWake(which, ''), ms);
}

export function fp_clear(id) {
  clearTimeout(id);
}
