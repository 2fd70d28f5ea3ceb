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
let fpModule;
// The origin of the script's URL: the default collector.
let fpScriptOrigin = '';
// The page's callbacks the module holds, by handle.
const fpFunctions = {};
let fpLast = 0;

// The module's exports: `wake(kind, text)`: 1 retry timer, 2 inactivity timer, 3 the
// visitor interacted (`fpInteracted`), 4 the collector's verdicts (see `fpSend`), 6
// retry later (text: Retry-After or ''), 7 events dropped (as 4, each with the same
// error); and `command` (see `fp_ac`). `scriptUrl` is where the SDK was loaded from.
export function fp_init(wake, command, scriptUrl) {
  fpWake = wake;
  fpModule = command;
  try {
    fpScriptOrigin = new URL(scriptUrl).origin;
  } catch (e) {}
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
// `fpUrl` is the collector's base URL and this path.
const BATCH_PATH = '/sdk/v1/batch';
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
// (The browser tests start other copies of this file, for other pages, with a `url`.)
export function fp_setup(url = fpOptions.batch) {
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
// (`fetch` may be the page's own, which may throw: nothing here throws into the
// module.)
export function fp_ping(visitor, session) {
  const collector = fpUrl.slice(0, -BATCH_PATH.length);
  try {
    fetch(collector + '/api/v2/journey/deployments/' + encodeURIComponent(fpOptions.deployment) + '/customers/' + visitor + '/ping?sessionId=' + session, { credentials: 'omit' }).catch(() => {});
  } catch (e) {}
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

// The browser's privacy signals that the site honours (`honorGlobalPrivacyControl`,
// `honorDoNotTrack`): 1 Global Privacy Control, 2 Do Not Track.
export function fp_signals() {
  const n = navigator;
  return (fpOptions.gpc && n.globalPrivacyControl ? 1 : 0) | (fpOptions.dnt && (n.doNotTrack || window.doNotTrack) == '1' ? 2 : 0);
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

// What the last of `fp_load`, `fp_cookie` and `fp_page` gave, for the module to take
// with `fp_result`: the glue writes a returned string through a shim of its own for
// each function, so one such function costs less than three.
let fpResult;

export function fp_result() {
  return fpResult;
}

// Calls of page functions that the module or a command asked for, [function,
// arguments]. They are made by `fp_run`, once the module's state is no longer borrowed:
// a page's function may call `ac(...)` again.
let fpCalls = [];

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

// How the module settles a callback (`CALL_*` in `core::sdk`): `f(null, { id })` or
// `f(Error)`.
const CALL_OK = 3;
const CALL_FAILED = 4;

// Asks for the call of held callback `handle`, as `how` says, with `text` (the id or
// the error's message), and lets it go.
function fpCallback(handle, how, text) {
  const f = fpFunctions[handle];
  delete fpFunctions[handle];
  if (f) fpCalls.push([f, how == CALL_OK ? [null, { id: text }] : [new Error(text)]]);
}

export function fp_fail(handle, text) {
  fpCallback(handle, CALL_FAILED, text);
}

export function fp_free(handle) {
  delete fpFunctions[handle];
}

// The page's `on`/`once` handlers: [event, function, once], in the order they came.
let fpHandlers = [];

// Asks for the calls of the event's handlers with `args`; a `once` one goes.
function fpEmit(event, args) {
  fpHandlers = fpHandlers.filter(([e, f, once]) => e != event || (fpCalls.push([f, args]), !once));
}

// `session:started` or `session:ended` (the module's `SESSION_*`), with the session's id.
export function fp_emit(event, sessionId) {
  fpEmit(event, [{ sessionId }]);
}

// The callbacks of `record` and `identify`, by event id, until the event is settled.
const fpWaiting = {};

export function fp_wait(id, handle) {
  fpWaiting[id] = handle;
}

// Asks for the call of event `id`'s callback, if it has one (see `fpCallback`).
export function fp_settle(id, how, text) {
  const handle = fpWaiting[id];
  delete fpWaiting[id];
  if (handle) fpCallback(handle, how, text);
}

// A refusal of the page's `command`: once on the console, to the page's `error`
// handlers, and to the callback of event `id` if there is one. Gives what it said.
export function fp_report(command, message, id) {
  const text = "[footpath] ac('" + command + "'): " + message;
  // (The page's `console.error` may throw: nothing here throws into the module.)
  try {
    console.error(text);
  } catch (e) {}
  fpEmit(ERROR, [{ command, message: text }]);
  if (id) fp_settle(id, CALL_FAILED, text);
  return text;
}

// Events recorded while consent is pending, [id, text], oldest first: at most
// `MAX_HELD_EVENTS`, so that a page left open for hours without an answer does not
// grow without bound (the first, such as the page view, matter most).
const MAX_HELD_EVENTS = 200;
let fpPending = [];

// Holds an event, or past the bound settles its callback as failed with `refusal`.
export function fp_hold(id, text, refusal) {
  if (fpPending.length < MAX_HELD_EVENTS) fpPending.push([id, text]);
  else fp_settle(id, CALL_FAILED, refusal);
}

// A grant (`refusal` '') queues the held events; a denial drops them, and their
// callbacks hear `refusal`.
export function fp_release(refusal) {
  for (const [id, text] of fpPending) refusal ? fp_settle(id, CALL_FAILED, refusal) : fp_queue(text);
  fpPending = [];
}

// The test hook's state (`ac.state()`): empty before init (`started` false); `queued`
// counts this page's events that the collector has not judged yet. Made here and read
// by the loader (or `fp_state_value`), so that no object crosses the module boundary.
let fpState;
export function fp_state(visitorId, sessionId, started) {
  fpState = {};
  if (started) {
    fpState.visitorId = visitorId;
    if (sessionId) fpState.sessionId = sessionId;
    // (The browser tests read the queue of other copies of this file, without init.)
    fpState.deploymentId = fpOptions && fpOptions.deployment;
    // Where batches go, once consent lets anything be sent (the plugin module asks
    // the collector there for the session).
    fpState.url = fpUrl;
    fpState.queued = fpQueue.length;
  }
}

export function fp_state_value() {
  return fpState;
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

// Reads the values of the cookies called `name`, joined by \x01 (`set` 0); or sets
// first-party cookie `name` to `value` for the visitor's lifetime, with the page's
// `cookieDomain` and `cookieExpiryDays` (and `Secure` on https), or removes it when
// `value` is empty (`set` 1).
export function fp_cookie(name, set, value) {
  try {
    if (set) {
      const domain = fpOptions.domain ? '; Domain=' + fpOptions.domain : '';
      const secure = location.protocol == 'https:' ? '; Secure' : '';
      document.cookie = name + '=' + value + '; Max-Age=' + (value ? fpOptions.days * 86400 : 0) + '; Path=/; SameSite=Lax' + domain + secure;
    }
    return (fpResult = document.cookie
      .split('; ')
      .filter((pair) => !pair.indexOf(name + '='))
      .map((pair) => pair.slice(name.length + 1))
      .join('\x01'));
  } catch (e) {
    return (fpResult = '');
  }
}

// The protocol's `CAMPAIGN_PARAMETERS`, in its order (a test keeps the two equal,
// through `fpCampaignParameters`, which the shipped script drops as unused).
const CAMPAIGN_PARAMETERS = ['utm_source', 'utm_medium', 'utm_campaign', 'utm_term', 'utm_content', 'gclid', 'fbclid', 'msclkid', 'dclid', 'ttclid'];

export function fpCampaignParameters() {
  return CAMPAIGN_PARAMETERS;
}

// The current page's facts for the module (see `fpPage`).
export function fp_page() {
  fpResult = fpPage('') || '';
}

// The page's facts and the browser's context as the JSON the module puts into an
// event: `,"page":{...},"context":{...}`, written as the Rust encoder would write
// `Page` and `Context` (empty texts left out, the search term the first of the site's
// search parameters present, the campaign parameters present in their order). The URL
// is `location` resolved against the page's (or the page's own for ''), without the
// site's excluded parameters, without the fragment unless the site keeps it. `title`,
// when given, replaces the document's. Undefined when `location` is not a URL.
function fpPage(location, title) {
  try {
    const d = document;
    // (Not `new URL('', href)`, which drops the fragment that `keepUrlFragment` keeps.)
    const url = new URL(location || d.location.href, d.location.href);
    const params = url.searchParams;
    const names = fpOptions.search.concat(CAMPAIGN_PARAMETERS);
    const values = names.map((name) => params.get(name) || '');
    for (const name of fpOptions.excluded) params.delete(name);
    if (!fpOptions.keep) url.hash = '';
    const meta = d.querySelector('meta[name=keywords]');
    const s = screen;
    const fields = [
      url.href,
      title === undefined ? d.title : title,
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
    // The page's own title keeps its \x01 (JSON escapes it), as it did in the module.
    if (title !== undefined) fields[1] = fpWellFormed(title);
    return fpFacts(fields, names, values.map(fpText), fpOptions.search.length);
  } catch (e) {}
}

// A fact as the module used to receive it: without the separator `\x01` (`?q=a%01b`
// once shifted every later field), and with a lone surrogate (a cut emoji) replaced
// by U+FFFD as the glue's `TextEncoder` did, since `JSON.stringify` would write it as
// an escape that the collector's JSON parser refuses.
export function fpText(value) {
  const text = '' + value;
  // One test on the hot path: most facts hold neither.
  return /[\x01\ud800-\udfff]/.test(text) ? fpWellFormed(text.replace(/\x01/g, '')) : text;
}

// `text` with each lone surrogate replaced by U+FFFD, as `TextEncoder` does:
// `JSON.stringify` would write it as an escape that the collector's JSON parser
// refuses.
export function fpWellFormed(text) {
  return /[\ud800-\udfff]/.test(text) ? new TextDecoder().decode(new TextEncoder().encode(text)) : text;
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

// The page's `ac(...)` calls. `fp_ac` reads and checks each command's arguments, and
// answers what needs nothing of the module's state itself: `on`, `once` and `off`
// (the handlers are held here), refusals (on the console and to the `error` handlers,
// `fp_report`), and the plugin module's refusals, which the loader hands back as the
// command with its message. The rest goes to the module's `command` export as a number,
// a handle and two texts (`Command::read` in `core::sdk`), what goes into events as
// JSON written by the browser's own `JSON.stringify`.

// The commands the module runs, by its numbers (`COMMAND_*` in `core::sdk`).
const COMMAND_INIT = 0;
const COMMAND_PAGEVIEW = 1;
const COMMAND_RECORD = 2;
const COMMAND_IDENTIFY = 3;
const COMMAND_LOGOUT = 4;
const COMMAND_CONSENT = 5;
const COMMAND_OPT_OUT = 6;
const COMMAND_OPT_IN = 7;

// The events the page can subscribe to, by index (the module's `SESSION_*` are 1 and 2).
const EVENTS = ['ready', 'session:started', 'session:ended', 'error'];
const READY = 0;
const ERROR = 3;

// The protocol's limits (`footpath_protocol::v1`): names, string values and attributes
// per event.
const MAX_NAME_BYTES = 64;
const MAX_VALUE_BYTES = 1024;
const MAX_ATTRIBUTES = 50;

// The options `init` knows, and what each must be. `globalTraitsMapper` (trait mapping
// from event attributes is not implemented) and `region` (the Journey SDK's data
// centre: here the script's URL or `collectorUrl` names the collector) are accepted,
// so that existing snippets work unchanged, and have no effect.
const OPTION_RULES = {
  collectorUrl: 'must be an http(s) URL',
  cookieDomain: 'must be a string',
  cookieExpiryDays: 'must be 1 to 3650',
  sessionTimeoutMinutes: 'must be above 0, at most 1440',
  searchQueryParameters: 'must be an array of strings',
  excludedQueryParameters: 'must be an array of strings',
  keepUrlFragment: 'must be true or false',
  pageview: "must be 'auto', 'once' or 'off'",
  consent: "must be 'pending', 'granted' or 'denied'",
  honorGlobalPrivacyControl: 'must be true or false',
  honorDoNotTrack: 'must be true or false',
  globalTraitsMapper: '',
  region: '',
};

// What `init` gave, checked; undefined before it. The module keeps the deployment id,
// the session timeout, the page view mode and the site's consent (`core::Options`);
// the rest is used here only.
let fpOptions;
// The visitor's traits as the module last took them: name -> JSON value, in the order
// they came (`identify` merges newer ones over these).
let fpTraits = new Map();

// One `ac(...)` call. A refused call is reported, and a refused `record` or `identify`
// still answers its callback (its last function argument), once. Whatever the page
// passes (a throwing getter, a proxy), nothing throws into the page.
export function fp_ac(list) {
  const name = typeof list[0] == 'string' ? list[0] : '';
  try {
    fpCommand(name, [...list]);
  } catch (message) {
    // What the checks throw is a sentence; anything else (a getter of the page's that
    // threw) is not repeated, whatever it is.
    const text = fp_report(name, typeof message == 'string' ? message : 'could not read its arguments', '');
    const callback = [...list].reverse().find((value) => typeof value == 'function');
    if ((name == 'record' || name == 'identify') && callback) fpCalls.push([callback, [new Error(text)]]);
  }
  fp_run();
}

// Runs command `name` with the page's arguments `list`; throws the reason when it is
// refused.
function fpCommand(name, list) {
  const [, a, b, c] = list;
  if (name == 'on' || name == 'once' || name == 'off') return fpSubscribe(name, a, b);
  if (name == 'load' || name == 'forms:track' || name == 'session') throw typeof a == 'string' ? a : 'is for the plugin module';
  if (name == 'init') return fpInit(a, b);
  if (!['pageview', 'record', 'identify', 'consent', 'optOut', 'optIn'].includes(name)) throw name ? 'is not a command' : 'needs a command name';
  if (!fpOptions) throw 'call init first';
  if (name == 'pageview') return fpModuleCommand(COMMAND_PAGEVIEW, 0, ...fpPageview(a));
  if (name == 'record') return fpRecord(a, b, c);
  if (name == 'identify') return fpIdentify(list);
  if (name == 'consent') {
    if (a !== 'granted' && a !== 'denied') throw "needs 'granted' or 'denied'";
    return fpModuleCommand(COMMAND_CONSENT, 0, a);
  }
  fpModuleCommand(name == 'optOut' ? COMMAND_OPT_OUT : COMMAND_OPT_IN, 0);
}

// Calls the module's `command` (see `Command::read`); gives whether it took effect.
function fpModuleCommand(which, handle, a, b, number) {
  return fpModule(which, number || 0, handle, a || '', b || '');
}

function fpSubscribe(how, event, f) {
  const index = EVENTS.indexOf(event);
  if (index < 0) throw 'unknown event';
  if (typeof f != 'function') throw 'needs a function';
  // `off` removes every handler of the event that holds the same function.
  if (how == 'off') fpHandlers = fpHandlers.filter(([e, g]) => e != index || g !== f);
  // `ready` is for handlers registered before init; later ones are called at once.
  else if (index == READY && fpOptions) fpCalls.push([f, []]);
  else fpHandlers.push([index, f, how == 'once']);
}

// The entries of a plain object (not an array, function or null); none for undefined.
function fpEntries(value, what) {
  if (value === undefined) return [];
  if (!value || typeof value != 'object' || Array.isArray(value)) throw what + ' must be an object';
  return Object.entries(value);
}

// Why `name` breaks the protocol's rule for event, attribute and trait names
// (`validate_event_name`: ASCII letters, digits and `_`, 1 to 64 bytes), or ''.
export function fpNameProblem(name) {
  if (!name) return 'is empty';
  if (utf8Bytes(name) > MAX_NAME_BYTES) return 'is longer than 64 bytes';
  return /^\w+$/.test(name) ? '' : 'may contain only letters, digits and _';
}

// A flat object of strings, finite numbers and booleans, each plain or as the Journey
// API's `{ dataType, value }`: its entries as [name, JSON value].
export function fpMembers(value, what) {
  const entries = fpEntries(value, what);
  if (entries.length > MAX_ATTRIBUTES) throw what + ' may have at most 50 entries';
  return entries.map(([name, given]) => {
    const problem = fpNameProblem(name);
    if (problem) throw what + ": name '" + name + "' " + problem;
    // (Its own `value` only: an element's inherited `value` is the page's, not an
    // attribute.)
    let item = given && typeof given == 'object' && !Array.isArray(given) ? (Object.prototype.hasOwnProperty.call(given, 'value') ? given.value : undefined) : given;
    const type = typeof item;
    if (type != 'string' && type != 'boolean' && !(type == 'number' && isFinite(item))) throw what + '.' + name + ' must be a string, finite number or boolean';
    if (type == 'string' && utf8Bytes((item = fpWellFormed(item))) > MAX_VALUE_BYTES) throw what + '.' + name + ' is longer than 1024 bytes';
    return [name, JSON.stringify(item)];
  });
}

// `,"key":{...}` for `members` (see `fpMembers`), or '' for none, as the Rust encoder
// leaves out an empty object.
export function fpObject(key, members) {
  return members.length ? ',"' + key + '":{' + members.map(([name, json]) => JSON.stringify(name) + ':' + json) + '}' : '';
}

// A callback argument: held for the module, by handle (0 for none).
export function fpHoldCallback(value) {
  if (value === undefined) return 0;
  if (typeof value != 'function') throw 'bad callback';
  fpFunctions[++fpLast] = value;
  return fpLast;
}

// `ac('init', deploymentId [, options])`. Problems with single options do not stop
// the SDK: each is reported, and the option keeps its default.
function fpInit(deployment, given) {
  if (fpOptions) throw 'already initialised';
  if (typeof deployment != 'string' || !deployment) throw 'needs a deployment id';
  const [options, problems] = fpReadOptions(given);
  // Again: a getter in the options may have called `init` itself.
  if (fpOptions) throw 'already initialised';
  const collector = options.url.replace(/\/+$/, '');
  if (!collector) throw 'needs collectorUrl';
  options.batch = collector + BATCH_PATH;
  options.deployment = fpWellFormed(deployment);
  fpOptions = options;
  fpModuleCommand(COMMAND_INIT, options.pageviewOff, JSON.stringify(options.deployment), options.consent, options.timeout);
  for (const problem of problems) fp_report('init', problem, '');
  fpEmit(READY, []);
}

// The options of `init`, with their defaults, and the problems found.
export function fpReadOptions(given) {
  const options = {
    url: fpScriptOrigin,
    domain: '',
    days: 365,
    timeout: 20 * 6e4,
    search: ['q'],
    excluded: [],
    keep: false,
    pageviewOff: 0,
    consent: 'granted',
    gpc: true,
    dnt: false,
  };
  const problems = [];
  for (const [key, value] of fpEntries(given, 'options')) {
    const text = typeof value == 'string';
    const flag = typeof value == 'boolean';
    const number = typeof value == 'number' ? value : NaN;
    // Copied once: what is checked is what is kept (an index getter could answer
    // differently the second time).
    const list = Array.isArray(value) && [...value];
    const names = list && list.every((item) => typeof item == 'string');
    let ok = OPTION_RULES.hasOwnProperty(key);
    if (key == 'collectorUrl') (ok = text && /^https?:\/\//.test(value)) && (options.url = value);
    if (key == 'cookieDomain') (ok = text) && (options.domain = value);
    if (key == 'cookieExpiryDays') (ok = number >= 1 && number <= 3650) && (options.days = Math.trunc(number));
    if (key == 'sessionTimeoutMinutes') (ok = number > 0 && number <= 1440) && (options.timeout = number * 6e4);
    if (key == 'searchQueryParameters') (ok = names) && (options.search = list);
    if (key == 'excludedQueryParameters') (ok = names) && (options.excluded = list);
    if (key == 'keepUrlFragment') (ok = flag) && (options.keep = value);
    if (key == 'honorGlobalPrivacyControl') (ok = flag) && (options.gpc = value);
    if (key == 'honorDoNotTrack') (ok = flag) && (options.dnt = value);
    if (key == 'pageview') (ok = ['auto', 'once', 'off'].includes(value)) && (options.pageviewOff = +(value == 'off'));
    if (key == 'consent') (ok = ['pending', 'granted', 'denied'].includes(value)) && (options.consent = value);
    if (!ok) problems.push("option '" + key + "' " + (OPTION_RULES.hasOwnProperty(key) ? OPTION_RULES[key] : 'is not an option'));
  }
  return [options, problems];
}

// `ac('pageview' [, { location, title, customAttributes, traitsMapper }])`: the facts
// of its page and its attributes.
export function fpPageview(given) {
  let location = '';
  let title;
  let attributes = [];
  for (const [key, value] of fpEntries(given, 'pageview options')) {
    if (key == 'location' || key == 'title') {
      if (typeof value != 'string') throw key + ' must be a string';
      key == 'title' ? (title = value) : (location = value);
    } else if (key == 'customAttributes') attributes = fpMembers(value, 'customAttributes');
    else if (key != 'traitsMapper') throw "'" + key + "' is not a page view option";
  }
  const facts = fpPage(location, title);
  if (facts === undefined) throw 'location is not a URL';
  return [facts, fpObject('attributes', attributes)];
}

// `ac('record', eventName [, attributes] [, callback])`.
function fpRecord(name, given, callback) {
  if (typeof name != 'string') throw 'needs an event name';
  const problem = fpNameProblem(name);
  if (problem) throw "event name '" + name + "' " + problem;
  const attributes = typeof given == 'function' ? [] : fpMembers(given, 'attributes');
  fpModuleCommand(COMMAND_RECORD, fpHoldCallback(typeof given == 'function' ? given : callback), name, fpObject('attributes', attributes));
}

// `ac('identify' [, loginId] [, traits] [, callback])`; `loginId === null` logs out.
// The module keeps the login id and the traits it is given, and they ride on every
// later event; the traits given here are merged over the earlier ones, which are kept
// here once the module has taken them (not while consent is denied).
function fpIdentify(list) {
  const id = list[1];
  const logout = id === null;
  let next = 2;
  let login = '';
  let traits = [];
  if (typeof id == 'string') {
    if (!id || utf8Bytes(id) > MAX_VALUE_BYTES) throw 'bad login id';
    login = ',"loginId":' + JSON.stringify(fpWellFormed(id));
  } else if (!logout) next = 1;
  const given = list[next];
  if (given === undefined) next++;
  else if (typeof given != 'function') {
    if (logout) throw 'log-out takes no traits';
    traits = fpMembers(given, 'traits');
    next++;
  }
  // Checked before the callback is held, so that a refusal still reaches it.
  if (list.slice(next + 1).some((value) => value !== undefined)) throw 'too many arguments';
  const merged = new Map([...fpTraits, ...traits]);
  // They ride on every later event, which the collector would refuse with more.
  if (merged.size > MAX_ATTRIBUTES) throw 'traits may have at most 50 entries, with those given before';
  const callback = fpHoldCallback(list[next]);
  if (logout) {
    if (fpModuleCommand(COMMAND_LOGOUT, callback)) fpTraits = new Map();
    return;
  }
  if (fpModuleCommand(COMMAND_IDENTIFY, callback, login, fpObject('traits', [...merged]))) fpTraits = merged;
}
