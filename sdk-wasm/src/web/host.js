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

// `wake(kind, text)`: 1 retry timer, 2 inactivity timer, 3 the visitor interacted
// (`fpInteracted`), 4 the collector's verdicts (see `fpSend`), 6 retry later (text:
// Retry-After or ''), 7 events dropped (as 4, each with the same error).
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

// How much of the queue is saved, how much it holds in all, and how much one request
// carries. The saved part's bound keeps a page from filling the visitor's storage
// (browsers give an origin about 5 million UTF-16 units of `localStorage`); past it, a
// burst waits in the page's memory only, up to five times as much, so that a burst
// the collector takes some seconds to absorb is not dropped.
const MAX_STORED_EVENTS = 4000;
// UTF-16 units, one per byte of ASCII JSON.
const MAX_STORED_CHARS = 2e6;
const MAX_QUEUED_EVENTS = 5 * MAX_STORED_EVENTS;
const MAX_QUEUED_CHARS = 5 * MAX_STORED_CHARS;
// The collector's own default limit of events per batch.
const MAX_EVENTS_PER_REQUEST = 100;
// Browsers refuse keepalive requests and beacons over 64 KiB in flight.
const MAX_KEEPALIVE_BYTES = 6e4;
// What one request may hold before compression, when it is compressed: the collector
// takes up to 16 times its body limit once inflated.
const MAX_INFLATED_BYTES = 5e5;
const REQUEST_TIMEOUT_MS = 3e4;
// Requests on their way at once: more than one only for a backlog of full requests,
// so that a burst drains while the collector commits the previous ones.
const MAX_REQUESTS_IN_FLIGHT = 6;
// An event waits at most this long for others to go with it.
const SEND_DELAY_MS = 1e3;
// ... unless this many are waiting.
const SEND_NOW_EVENTS = 10;

// The send queue: the events of this page that the collector has not judged yet, each
// the text of a batch of one (`Tracked::text` in the module), oldest first. It lives
// here rather than in the module because this is cheaper in bytes, and its rules are
// few: it is saved in `localStorage` under this page's own keys, so that it outlives a
// reload, a crash or a closed tab, and the next page of the site adopts the keys of
// pages that are gone (`fp_setup`). Each event keeps its id through every retry and
// reload; the collector deduplicates by id.
//
// Saving is coalesced and incremental, so that `record` costs the same whatever the
// queue holds: the events queued in one task are written once, at the end of the task
// (a microtask), as one chunk under `<page key>.<n>`, one event per line; a chunk is
// rewritten when some of its events are settled and removed when all are. A page that
// navigates away in the same task as it records still saves first: the microtask runs
// before the task ends (and `pagehide` beacons the events).
//
// Once the saved part is at its bound, newer events wait in `fpSpilled`, in memory
// only (a page that goes beacons them like the others), and are saved, oldest first,
// as saved events settle.
let fpQueue = [];
// The queue's size, and that of its saved part: entries' lengths plus one separator
// each.
let fpChars = 0;
let fpStoredChars = 0;
let fpStored = 0;
let fpSaving;
// Entries not saved yet, in order; the chunk of each saved one; chunks to rewrite.
const fpUnsaved = new Set();
const fpSpilled = new Set();
const fpChunkOf = new Map();
const fpDirty = new Set();
let fpChunks = 0;
const QUEUE_KEY = '_footpath_q';
// `fpUrl` is the collector's base URL and this path, `/sdk/v1/batch`.
const BATCH_PATH_LENGTH = 13;
let fpKey = QUEUE_KEY;
let fpUrl;
// The entries on their way, and how many requests carry them.
const fpOut = new Set();
let fpInFlight = 0;
// Waiting out a retry delay: only the module's retry timer (`fp_flush`) or the
// browser coming back online ends it.
let fpPaused;
let fpSoon;
// Whether `fpSoon` is the timer for "send now".
let fpSoonNow;
let fpDropped = [];
// (Guarded so that Node's test runner can load the pure functions of this file.)
const fpLocks = typeof navigator == 'object' && navigator.locks;
// Resolving these lets go of the locks this page holds.
let fpHeld = [];

function fpHold() {
  return new Promise((release) => fpHeld.push(release));
}

function fpLock() {
  if (fpLocks) fpLocks.request(fpKey, fpHold);
}

// A new entry is saved if the saved part has room and nothing waits before it in
// memory; it waits in memory otherwise.
function fpKeep(entry) {
  fpSpilled.size || !fpRoom(entry) ? fpSpilled.add(entry) : fpStore(entry);
}

function fpRoom(entry) {
  return fpStored < MAX_STORED_EVENTS && fpStoredChars + entry.length + 1 <= MAX_STORED_CHARS;
}

function fpStore(entry) {
  fpStored++;
  fpStoredChars += entry.length + 1;
  fpUnsaved.add(entry);
}

// At most 20,000 events and about 10 MB (UTF-16 units, one per byte of ASCII JSON) in
// all: the oldest go first, and the module hears which (their callbacks get an error,
// the page's `on('error')` handlers one report per task). Events on their way stay,
// since the collector's verdict on them is coming: the queue is over the bound by at
// most the requests in flight until then.
function fpBound() {
  for (let i = 0; fpQueue[i] && (fpQueue.length > MAX_QUEUED_EVENTS || fpChars > MAX_QUEUED_CHARS); ) {
    const entry = fpQueue[i];
    if (fpOut.has(entry)) {
      i++;
      continue;
    }
    fpQueue.splice(i, 1);
    fpChars -= entry.length + 1;
    fpForget(entry);
    if (fpDropped.push(fpId(entry)) < 2) {
      setTimeout(() => {
        fpWake(7, fpDropped.map((id) => id + '\x01!queue full: dropped ' + fpDropped.length + ' oldest events').join('\x01'));
        fpDropped = [];
      });
    }
  }
  fpSaveSoon();
}

// One save at the end of this task, whatever changed in it.
function fpSaveSoon() {
  if (!fpSaving) {
    fpSaving = 1;
    queueMicrotask(fpSaveNow);
  }
}

// Writes what changed: the unsaved entries as a new chunk, and the chunks that lost
// entries, without them (an empty value removes the key).
function fpSaveNow() {
  fpSaving = 0;
  if (fpUnsaved.size) {
    const chunk = { key: fpKey + '.' + fpChunks++, entries: [...fpUnsaved] };
    fpUnsaved.clear();
    for (const entry of chunk.entries) fpChunkOf.set(entry, chunk);
    fpDirty.add(chunk);
  }
  for (const chunk of fpDirty) {
    chunk.entries = chunk.entries.filter((entry) => fpChunkOf.get(entry) == chunk);
    fp_save(chunk.key, chunk.entries.join('\n'));
  }
  fpDirty.clear();
}

// An entry left the queue (settled or dropped): its chunk is rewritten at the save,
// and the room it leaves goes to the oldest entries waiting in memory.
function fpForget(entry) {
  const chunk = fpChunkOf.get(entry);
  fpSpilled.delete(entry);
  // (Settled after `fp_wipe`, an entry is neither saved nor waiting.)
  if (chunk || fpUnsaved.has(entry)) {
    fpStored--;
    fpStoredChars -= entry.length + 1;
    for (const waiting of fpSpilled) {
      if (!fpRoom(waiting)) break;
      fpSpilled.delete(waiting);
      fpStore(waiting);
    }
  }
  fpUnsaved.delete(entry);
  fpChunkOf.delete(entry);
  if (chunk) fpDirty.add(chunk);
  fpSaveSoon();
}

// Where a stored key's chunk comes in its page's order (a whole queue saved by an
// older version of the SDK, without a number, first).
export function fpChunkNumber(key) {
  return key.includes('.') ? +key.split('.')[1] : -1;
}

// The queue's new content, `list`, with its size kept up to date.
function fpReplace(list) {
  fpQueue = list;
  fpChars = list.reduce((chars, entry) => chars + entry.length + 1, 0);
}

// Bytes of `text` in UTF-8; the module's JSON is almost always ASCII, whose length is
// its size, so the encoder runs only when it is not.
export function utf8Bytes(text) {
  return /^[\x00-\x7f]*$/.test(text) ? text.length : new TextEncoder().encode(text).length;
}

export function fpId(entry) {
  return entry.substr(entry.indexOf('"events":[') + 17, 36);
}

// Up to `,"sentAt"`, comma included: inside a JSON string a quote is always escaped,
// so a deployment id such as `a"sentAt` cannot end the head early.
export function fpHead(entry) {
  return entry.slice(0, entry.indexOf(',"sentAt"'));
}

// The longest run from the start of `list` that can go in one request: entries of the
// same deployment and visitor, at most `MAX_EVENTS_PER_REQUEST` events and `maxBytes`
// bytes of text. A first entry bigger than that goes alone, by plain fetch (the module
// refuses an event over the protocol's `MAX_EVENT_BYTES`, 65,520, so it still fits the
// collector's default body limit of 64 KiB as it is). So a
// backlog drains a hundred events a request, and an uncompressed request or beacon
// stays within the keepalive limit.
export function fpTake(list, maxBytes) {
  const batch = [];
  const head = list[0] && fpHead(list[0]);
  let size = 0;
  for (const entry of list) {
    if (batch.length >= MAX_EVENTS_PER_REQUEST || fpHead(entry) != head || ((size += utf8Bytes(entry) + 1) > maxBytes && batch[0])) break;
    batch.push(entry);
  }
  return batch;
}

// The batches of one merged into one, stamped with the time it is sent.
export function fpBody(batch) {
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
  // Capturing: a scroll inside an element does not bubble. Not marked passive, as none
  // of these can hold up scrolling (only touch and wheel listeners can).
  for (const type of ['scroll', 'pointerdown', 'keydown']) addEventListener(type, fpInteracted, true);
  fpKey += fp_random();
  fpLock();
  try {
    // Other pages' chunk keys, by page key (the name of the page's lock).
    const pages = {};
    for (const key of Object.keys(localStorage)) {
      const page = key.split('.')[0];
      if (!key.indexOf(QUEUE_KEY) && page != fpKey) (pages[page] = pages[page] || []).push(key);
    }
    for (const page in pages) {
      const keys = pages[page].sort((a, b) => fpChunkNumber(a) - fpChunkNumber(b));
      const adopt = () => {
        const entries = [];
        for (const key of keys) entries.push(...(fp_load(key) || '').split('\n').filter(Boolean));
        // Saved under this page's key before the dead page's keys go, so that a crash
        // in between loses nothing; and again after, in case the storage was too full
        // for both.
        fpReplace(entries.concat(fpQueue));
        entries.map(fpKeep);
        fpBound();
        fpSaveNow();
        for (const key of keys) fp_save(key, '');
        for (const entry of entries) fpDirty.add(fpChunkOf.get(entry));
        fpDirty.delete(undefined);
        fpSaveNow();
        setTimeout(fpFlush);
        return fpHold();
      };
      fpLocks ? fpLocks.request(page, { ifAvailable: true }, (lock) => lock && adopt()) : adopt();
    }
  } catch (e) {}
}

// Interaction keeps the visitor's session alive while they read a long page: a
// scroll, a click or a key on the visible page wakes the module, which decides whether
// it is time to tell the collector (`Tracker::keep_alive`). At most once a minute, so
// that scrolling does not call into the module at every frame; never while the page
// is hidden (a tab left open in the background is not someone reading). Listening
// starts with sending (`fp_setup`): after `init`, once consent is granted.
const INTERACTION_WAKE_MS = 6e4;
let fpInteraction = 0;

function fpInteracted() {
  const now = Date.now();
  if (document.visibilityState == 'visible' && now - fpInteraction >= INTERACTION_WAKE_MS) {
    fpInteraction = now;
    fpWake(3, '');
  }
}

// The Journey API's ping, which keeps the session alive at the collector without an
// event, on the collector that `fp_setup` named. Its answer is not read
// (`pollIntervalMilliseconds` is for clients that poll for web actions), and a lost
// ping needs no retry: the next interaction sends another.
export function fp_ping(deployment, visitor, session) {
  const collector = fpUrl.slice(0, -BATCH_PATH_LENGTH);
  fetch(collector + '/api/v2/journey/deployments/' + deployment + '/customers/' + visitor + '/ping?sessionId=' + session, { credentials: 'omit' }).catch(() => {});
}

// Consent was denied or revoked: this page's queue is forgotten, and every key
// Footpath keeps in `localStorage` (the queues of all pages, the session record) goes.
export function fp_wipe() {
  // The module cancels a pending retry: sending must not stay paused for a later grant.
  fpPaused = 0;
  fpReplace([]);
  fpUnsaved.clear();
  fpSpilled.clear();
  fpStored = fpStoredChars = 0;
  fpChunkOf.clear();
  fpDirty.clear();
  fpBeaconed = [];
  try {
    for (const key of Object.keys(localStorage)) if (!key.indexOf('_footpath')) localStorage.removeItem(key);
  } catch (e) {}
}

// The browser's privacy signals: 1 Global Privacy Control, 2 Do Not Track.
export function fp_signals() {
  const n = navigator;
  return (n.globalPrivacyControl ? 1 : 0) | ((n.doNotTrack || window.doNotTrack) == '1' ? 2 : 0);
}

// An event from the module: stored at once, sent within a second, or now when ten
// are waiting.
export function fp_queue(text) {
  fpQueue.push(text);
  fpChars += text.length + 1;
  fpKeep(text);
  fpBound();
  // The flush timer is set once, and moved forward once when enough are waiting.
  const now = fpQueue.length >= SEND_NOW_EVENTS;
  if (!fpSoon || (now && !fpSoonNow)) {
    clearTimeout(fpSoon);
    fpSoon = setTimeout(fpFlush, now ? 0 : SEND_DELAY_MS);
    fpSoonNow = now;
  }
}

// The module's retry timer fired, or the browser is back online: resume at once.
export function fp_flush() {
  fpPaused = 0;
  fpFlush();
}

// Sends the oldest events not on their way: one request, and while at least a full
// request's worth waits, more, up to `MAX_REQUESTS_IN_FLIGHT`.
function fpFlush() {
  fpSoon = 0;
  while (!fpPaused && fpInFlight < MAX_REQUESTS_IN_FLIGHT) {
    const idle = fpQueue.filter((entry) => !fpOut.has(entry));
    if (!idle[0] || (fpInFlight && idle.length < MAX_EVENTS_PER_REQUEST)) return;
    const batch = fpTake(idle, globalThis.CompressionStream ? MAX_INFLATED_BYTES : MAX_KEEPALIVE_BYTES);
    for (const entry of batch) fpOut.add(entry);
    fpInFlight++;
    fpSend(batch);
  }
}

// The body as gzip where the browser can compress (the collector knows it by its first
// bytes, so no header is needed and the request stays free of a CORS preflight), or as
// it is. Compressing is asynchronous: `send` gets the body when it is ready, at once
// without compression.
export function fpCompress(text, send) {
  try {
    if (globalThis.CompressionStream) {
      // text/plain, as a string body would be: a CORS "simple" request.
      return new Response(new Blob([text]).stream().pipeThrough(new CompressionStream('gzip')), { headers: { 'content-type': 'text/plain' } })
        .blob()
        .then(send, () => send(text));
    }
  } catch (error) {
    // Sent as it is, below.
  }
  send(text);
}

// One request, with keepalive when small enough so that it survives the page. The
// collector's answer goes to the module as `id\x01[!error]` for each event: its
// verdicts for 2xx (and 400 with results), the refusal's message for the other 4xx;
// these events are settled and leave the queue. An answer without usable results (a
// proxy's page, `"results"` not a list) settles them with its message or "no
// verdict". 408 (the collector gave up reading a body that came too slowly: nothing
// wrong with the events), 429, 5xx and network failures keep them and ask the module
// how long to wait (with Retry-After for 429 and 503). So does a request or answer still
// incomplete after 30 s, which would otherwise hold up every later one, and anything
// that throws while the answer is read: whatever happens, the events are no longer
// on their way afterwards. Requests in flight together may be answered in any order;
// the first failure pauses sending, the others' answers are taken as they come.
function fpSend(batch) {
  const landed = () => {
    for (const entry of batch) fpOut.delete(entry);
    fpInFlight--;
  };
  const retry = (after) => {
    landed();
    if (!fpPaused) {
      fpPaused = 1;
      fpWake(6, after || '');
    }
  };
  fpCompress(fpBody(batch), (body) => fpFetch(body)
    .then((response) => {
      const status = response.status;
      if (status == 408 || status == 429 || status > 499) return retry((status == 429 || status == 503) && response.headers.get('retry-after'));
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
          landed();
          const settled = new Set(batch);
          for (const entry of batch) fpForget(entry);
          fpReplace(fpQueue.filter((entry) => !settled.has(entry)));
          fpBound();
          fpWake(4, text);
          fpFlush();
        });
    })
    .catch(() => retry()));
}

// A request that outlives the page (keepalive) when it is small enough that all the
// requests in flight stay within the browser's quota for those; a bigger one is sent
// again by the next page if this one goes first.
function fpFetch(body) {
  try {
    return fetch(fpUrl, {
      method: 'POST',
      body,
      mode: 'cors',
      credentials: 'omit',
      keepalive: (body.size || utf8Bytes(body)) * MAX_REQUESTS_IN_FLIGHT < MAX_KEEPALIVE_BYTES,
      signal: globalThis.AbortSignal && AbortSignal.timeout && AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (error) {
    return Promise.reject(error);
  }
}

// The page is being hidden, left or closed: what is not on its way already goes out
// by beacon, as text/plain (no CORS preflight), in as many beacons as needed. The
// fate of a beacon is unknown, so its events stay in the queue: this page sends them
// again if it lives on (and then calls their callbacks), the next page if not; the
// collector keeps one copy of each. Leaving a page hides it first, then fires
// `pagehide`: what a beacon took at the first does not go again at the second, but
// what the browser refused (`sendBeacon` false, e.g. over its quota) is tried again.
let fpBeaconed = [];

// The queue's entries that are not on their way and not in `list` (a set: the queue
// may hold thousands).
function fpIdle(list) {
  list = new Set(list);
  return fpQueue.filter((entry) => !fpOut.has(entry) && !list.has(entry));
}

function fpHide() {
  let rest = fpIdle(fpBeaconed);
  try {
    // Uncompressed: a page that is going away gives no time to compress.
    for (let batch; rest[0] && navigator.sendBeacon(fpUrl, fpBody((batch = fpTake(rest, MAX_KEEPALIVE_BYTES)))); ) rest = rest.slice(batch.length);
  } catch (e) {}
  // Those still queued that a beacon took, now or before: all but what is left.
  fpBeaconed = fpIdle(rest);
}

// Kinds: 0 undefined, 1 null, 2 false, 3 true, 4 number, 5 string, 6 function,
// 7 array of strings, 8 object, 9 anything else; plus 16 × (handle | items | entries). An object's
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
  } else if (Array.isArray(value)) {
    // Only lists of names are read (`searchQueryParameters`): each string followed by
    // `\x01`, as `fp_page` takes them; any other item leaves the array kind 9.
    kind = 7;
    count = value.length;
    fpTexts[at] = '';
    for (let i = 0; i < count; i++) typeof value[i] == 'string' ? (fpTexts[at] += value[i] + '\x01') : (kind = 9);
  } else if (type == 'object' && depth < 3) {
    const keys = Object.keys(value);
    kind = 8;
    count = keys.length;
    for (let i = 0; i < count; i++) {
      fpPut(keys[i], depth + 1);
      fpPut(value[keys[i]], depth + 1);
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

// What the last of `fp_text`, `fp_origin`, `fp_load`, `fp_cookie` and `fp_page` gave,
// for the module to take with `fp_result`: the glue writes a returned string through a
// shim of its own for each function, so one such function costs less than five.
let fpResult;

export function fp_result() {
  return fpResult;
}

export function fp_kind(i) {
  return fpKinds[i];
}

export function fp_text(i) {
  return (fpResult = fpTexts[i]);
}

export function fp_number(i) {
  return fpNumbers[i];
}

// Calls of held functions that the module asked for during the export running now.
// They are made by `fp_run`, once the module's state is no longer borrowed: a page's
// function may call `ac(...)` again.
let fpCalls = [];

// Asks for a call of a held function: 0 `f()`, 1 `f({sessionId})`, 2
// `f({command, message})`, 3 `f(null, {id})`, 4 `f(Error)`; + 8 lets the handle go.
export function fp_call(handle, kind, a, b) {
  fpCalls.push([fpFunctions[handle], [[], [{ sessionId: a }], [{ command: a, message: b }], [null, { id: a }], [new Error(a)]][kind & 7]]);
  if (kind & 8) delete fpFunctions[handle];
}

// Makes the calls asked for, in order. Those that a call's own `ac(...)` asks for are
// made by that command's `fp_run`, before the rest of these, as the page would expect
// of a function call.
export function fp_run() {
  const calls = fpCalls;
  fpCalls = [];
  for (const [f, args] of calls) {
    try {
      f.apply(null, args);
    } catch (e) {}
  }
}

export function fp_free(handle) {
  delete fpFunctions[handle];
}

// The page's `on`/`once` handlers: [event, handle, once], in the order they came.
let fpHandlers = [];

export function fp_on(event, handle, once) {
  fpHandlers.push([event, handle, once]);
}

// `ac('off')`: every handler of the event holding the same function goes, and is let
// go (the handle `off` was given is let go by the module, with its arguments).
export function fp_off(event, handle) {
  fpHandlers = fpHandlers.filter(([e, h]) => e != event || fpFunctions[h] !== fpFunctions[handle] || fp_free(h));
}

// Asks for the calls of the event's handlers (see `fp_call`); a `once` one goes.
export function fp_emit(event, kind, a, b) {
  fpHandlers = fpHandlers.filter(([e, h, once]) => e != event || fp_call(h, kind + once * 8, a, b) || !once);
}

// The callbacks of `record` and `identify`, by event id, until the event is settled.
const fpWaiting = {};

export function fp_wait(id, handle) {
  fpWaiting[id] = handle;
}

// Asks for the call of event `id`'s callback, if it has one (see `fp_call`).
export function fp_settle(id, kind, text) {
  const handle = fpWaiting[id];
  delete fpWaiting[id];
  if (handle) fp_call(handle, kind, text, '');
}

// Events recorded while consent is pending, [id, text], oldest first: at most
// `MAX_HELD_EVENTS`, so that a page left open for hours without an answer does not
// grow without bound (the first, such as the page view, matter most).
const MAX_HELD_EVENTS = 200;
let fpPending = [];

// Holds an event, or past the bound settles its callback as failed with `refusal`.
export function fp_hold(id, text, refusal) {
  if (fpPending.length < MAX_HELD_EVENTS) fpPending.push([id, text]);
  else fp_settle(id, 4 + 8, refusal);
}

// A grant (`refusal` '') queues the held events; a denial drops them, and their
// callbacks hear `refusal`.
export function fp_release(refusal) {
  for (const [id, text] of fpPending) refusal ? fp_settle(id, 4 + 8, refusal) : fp_queue(text);
  fpPending = [];
}

// The test hook's state (`ac.state()`): empty before init (`started` false); `queued`
// counts this page's events that the collector has not judged yet. Made here and read
// by the loader (or `fp_state_value`), so that no object crosses the module boundary.
let fpState;
export function fp_state(visitorId, sessionId, deploymentId, started) {
  fpState = {};
  if (started) {
    fpState.visitorId = visitorId;
    if (sessionId) fpState.sessionId = sessionId;
    fpState.deploymentId = deploymentId;
    // Where batches go, once consent lets anything be sent (the plugin module asks
    // the collector there for the session).
    fpState.url = fpUrl;
    fpState.queued = fpQueue.length;
  }
}

export function fp_state_value() {
  return fpState;
}

export function fp_error(text) {
  console.error(text);
}

export function fp_origin(url) {
  try {
    return (fpResult = new URL(url).origin);
  } catch (e) {
    return (fpResult = '');
  }
}

export function fp_now() {
  return Date.now();
}

// Every browser that runs WebAssembly has `crypto.getRandomValues`. One call costs
// microseconds whatever it fills, and an event's id takes three words: they come from
// a pool filled 1,024 at a time.
const RANDOM_POOL = 1024;
const fpRandom = new Uint32Array(RANDOM_POOL);
let fpRandomAt = RANDOM_POOL;

export function fp_random() {
  if (fpRandomAt == RANDOM_POOL) {
    crypto.getRandomValues(fpRandom);
    fpRandomAt = 0;
  }
  return fpRandom[fpRandomAt++];
}

export function fp_load(key) {
  fpResult = undefined;
  try {
    return (fpResult = localStorage.getItem(key));
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
    return (fpResult = document.cookie
      .split('; ')
      .filter((pair) => !pair.indexOf(name + '='))
      .map((pair) => pair.slice(name.length + 1))
      .join('\x01'));
  } catch (e) {
    return (fpResult = '');
  }
}

// The page's facts and the browser's context as the JSON the module puts into an
// event: `,"page":{...},"context":{...}`, written as the Rust encoder would write
// `Page` and `Context` (empty texts left out, the search term the first of the site's
// search parameters present, the campaign parameters present in their order). The URL
// is `location` resolved against the page's (or the page's own for ''), without the
// `excluded` parameters, without the fragment unless `keep`; `names` are the query
// parameters to read, the first `searched` for the search term. `title` replaces the
// document's when `ownTitle`. Undefined when `location` is not a URL.
export function fp_page(location, names, searched, excluded, keep, title, ownTitle) {
  fpResult = undefined;
  try {
    const d = document;
    const url = new URL(location, d.location.href);
    const params = url.searchParams;
    names = names.split('\x01');
    const values = names.map((name) => params.get(name) || '');
    for (const name of excluded.split('\x01')) if (name) params.delete(name);
    if (!keep) url.hash = '';
    const meta = d.querySelector('meta[name=keywords]');
    const s = screen;
    const fields = [
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
    ].map(fpText);
    // The module's own text is well-formed already (it came through the glue).
    if (ownTitle) fields[1] = title;
    return (fpResult = fpFacts(fields, names, values.map(fpText), searched));
  } catch (e) {}
}

// A fact as the module used to receive it: without the separator `\x01` (`?q=a%01b`
// once shifted every later field), and with a lone surrogate (a cut emoji) replaced
// by U+FFFD as the glue's `TextEncoder` did, since `JSON.stringify` would write it as
// an escape that the collector's JSON parser refuses.
export function fpText(value) {
  const text = '' + value;
  // One test on the hot path: most facts hold neither.
  return /[\x01\ud800-\udfff]/.test(text) ? new TextDecoder().decode(new TextEncoder().encode(text.replace(/\x01/g, ''))) : text;
}

// `fields` (texts): url, title, referrer, lang, keywords, navigator.language, screen
// width, height, density (× 100), viewport width, height; `values` those of the query
// parameters `names`. Empty texts are left out, but for the URL; a number that is not
// a whole number of at most nine digits counts as 0, as the module's parser counted it.
export function fpFacts(fields, names, values, searched) {
  const page = { url: fields[0] };
  ['title', 'referrer', 'lang', 'keywords'].forEach((key, i) => fields[i + 1] && (page[key] = fields[i + 1]));
  const search = values.slice(0, searched).find(Boolean);
  if (search) page.searchQuery = search;
  names.forEach((name, i) => i >= searched && values[i] && ((page.campaign = page.campaign || {})[name] = values[i]));
  const number = (i) => (/^\d{1,9}$/.test(fields[i]) ? +fields[i] : 0);
  const context = {
    browserLang: fields[5],
    screenWidth: number(6),
    screenHeight: number(7),
    screenDensity: number(8),
    viewportWidth: number(9),
    viewportHeight: number(10),
  };
  return ',"page":' + JSON.stringify(page) + ',"context":' + JSON.stringify(context);
}

export function fp_timer(which, ms) {
  return setTimeout(() => fpWake(which, ''), ms);
}

export function fp_clear(id) {
  clearTimeout(id);
}
