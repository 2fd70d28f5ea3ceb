// DOM work that is smaller written here than through web-sys and wasm-bindgen's
// closures (measured, see BENCHMARKS.md). Only reads and wiring: what is captured
// and recorded is decided in Rust (`rules.rs`). Every name here starts with `fp_`:
// `xtask` inlines this file into wasm-bindgen's glue, whose names it must not meet.

// The page's `ac` and the loader's `refuse(command, message)`, as `run` got them.
var fp_own, fp_refusal;

export function fp_start(ac, refuse) {
  fp_own = ac;
  fp_refusal = refuse;
}

export function fp_refuse(command, message) {
  fp_refusal(command, message);
}

// `ac('identify', value)` or `ac('record', name, value)` for `command` 1, 2 (the
// loader's `ac` does not throw).
export function fp_ac(command, name, value) {
  command > 1 ? fp_own('record', name, value) : fp_own('identify', value);
}

// A function that calls the module's handler `id` with its argument: `fp_fire` is the
// module's export, in scope here once `xtask` has inlined this file into the glue.
// No argument passed: one for the export would cost a table slot and a shim in the
// module for every call (measured); the handlers need none.
export function fp_handler(id) {
  return function () {
    fp_fire(id);
  };
}

// The command's arguments as the page passed them, walked for the module's `read`
// (the list itself not counted in the depth): at each index a kind
// (0 undefined, 1 null, 2 false, 3 true, 4 number, 5 string, 6 list, 7 object, 8
// anything else, 9 a function), plus 16 times the entries of a list or object,
// and the number or string itself. A list's items follow it; an object's keys (as
// strings) and values follow it in turn. No deeper than 6, no list or object of more
// than 1,000 entries (read as 8); an entry whose getter throws is left out.
// `fp_values` also holds what `fp_fields`, `fp_scroll` and `fp_history` give.
var fp_kinds, fp_values, fp_args;

export function fp_read(args) {
  fp_kinds = [];
  fp_values = [];
  fp_put((fp_args = args), -1);
}

// `load`'s `loadedCallback`, once the module's rules have seen it is a function.
export function fp_loaded() {
  try {
    fp_args[3]();
  } catch (e) {}
}

function fp_put(value, depth) {
  var at = fp_kinds.length, type = typeof value, kind = 8, count = 0, length, keys, item, i;
  fp_kinds.push(8);
  fp_values.push(value);
  if (value === undefined) kind = 0;
  else if (value === null) kind = 1;
  else if (type == 'boolean') kind = value ? 3 : 2;
  else if (type == 'number') kind = 4;
  else if (type == 'string') kind = 5;
  else if (type == 'function') kind = 9;
  else if (type == 'object' && depth < 6) {
    // A proxy may throw here: then it reads as anything else (8).
    try {
      keys = Array.isArray(value) ? null : Object.keys(value);
      length = (keys || value).length;
    } catch (e) {
      return;
    }
    if (!(length <= 1000)) return;
    for (i = 0; i < length; i++) {
      try {
        item = value[keys ? keys[i] : i];
      } catch (e) {
        continue;
      }
      if (keys) fp_put(keys[i], depth);
      fp_put(item, depth + 1);
      count++;
    }
    kind = keys ? 7 : 6;
  }
  fp_kinds[at] = kind + count * 16;
}

export function fp_kind(at) {
  return fp_kinds[at];
}

// What the walk found at `at`: a number or a string (two bindings of this one).
export function fp_value(at) {
  return fp_values[at];
}

// A form's controls, six entries each, in `fp_values`: tag name and `type` (ASCII
// lower-cased, as HTML compares them), `name` (or `id`), `autocomplete`, 1 inside
// (or being) an excluded element or 0, and the value: '' for a checkbox or radio button that is not
// checked, a multiple select's chosen values joined with commas.
export function fp_fields() {
  var out = [], elements = fp_sending.elements;
  for (var i = 0; i < elements.length; i++) {
    // A password's value is not even read: the rules in Rust refuse the field anyway.
    var e = elements[i], tag = fp_lower(e.tagName), type = fp_lower(e.getAttribute('type') || ''), value = type == 'password' ? '' : e.value;
    if (type == 'checkbox' || type == 'radio') {
      if (!e.checked) value = '';
    } else if (tag == 'select' && e.multiple) {
      value = [].map.call(e.selectedOptions, function (o) { return o.value; }).join();
    }
    out.push(
      tag,
      type,
      e.getAttribute('name') || e.id,
      e.getAttribute('autocomplete') || '',
      e.closest('[data-footpath-exclude]') ? 1 : 0,
      typeof value == 'string' ? value : ''
    );
  }
  fp_values = out;
  return out.length;
}

function fp_lower(text) {
  return text.replace(/[A-Z]+/g, function (upper) { return upper.toLowerCase(); });
}

// The idle timers: each rings once the visitor has not interacted for its delay, and
// again only after the visitor has been active since. Timers are re-armed at most
// once a second while the visitor is active: a mouse move fires many events a second,
// and an idle time is counted in seconds.
var fp_timers = [], fp_armed;

export function fp_idle(ring, ms) {
  if (!fp_timers.length) {
    // What counts as the visitor being there.
    ['pointermove', 'pointerdown', 'keydown', 'scroll', 'wheel', 'touchstart'].forEach(function (kind) {
      fp_listen(window, kind, fp_arm);
    });
  }
  fp_timers.push({ ring: ring, ms: ms });
  fp_armed = -Infinity;
  fp_arm();
}

function fp_arm() {
  var now = Date.now();
  if (now - fp_armed < 1000) return;
  fp_armed = now;
  fp_timers.forEach(function (timer) {
    // `clearTimeout` of a timer that rang, or of none, does nothing.
    clearTimeout(timer.id);
    timer.id = setTimeout(function () {
      // The next activity arms again at once.
      fp_armed = -Infinity;
      timer.ring();
    }, timer.ms);
  });
}

// The module's new-page hooks: what runs when the single-page app moves to another
// URL.
var fp_hooks = [];

export function fp_on_new_page(hook) {
  fp_hooks.push(hook);
}

// When the URL is another than when last seen, after each `history.pushState` and
// `replaceState` (the browser's own call first, throwing what it throws) and on
// `popstate`: the new-page hooks, then `onUrlChange(url)` (when `hooked`) or
// `ac('pageview')` after the task that changed it (by when a router has usually
// rendered the new page and set its title). False when refused, the refusal then in
// `fp_values`.
export function fp_history(hooked) {
  // The options' `onUrlChange`, which the module's rules saw as a function (should a
  // getter give something else now, calling it throws, caught below).
  var hook = hooked && fp_prop(fp_args[2], 'onUrlChange');
  var changed = function (href) {
    try {
      hooked ? hook(href) : fp_own('pageview');
    } catch (e) {}
  };
  var history, w = window, location = w.location, last = location.href;
  var check = function () {
    var href = location.href;
    if (href != last) {
      last = href;
      fp_hooks.forEach(function (hook) {
        hook();
      });
      setTimeout(changed, 0, href);
    }
  };
  try {
    history = w.history;
  } catch (e) {
    fp_values = ['needs history'];
    return false;
  }
  var methods = ['pushState', 'replaceState'];
  for (var i = 0; i < 2; i++) {
    var original = history[methods[i]];
    if (typeof original != 'function') {
      fp_values = ['needs history.pushState'];
      return false;
    }
    history[methods[i]] = fp_wrap(history, original, check);
  }
  fp_listen(w, 'popstate', check);
  return true;
}

function fp_wrap(history, original, changed) {
  return function (state, unused, url) {
    var result = original.call(history, state, unused, url);
    changed();
    return result;
  };
}

// `clicked()` on each click on (or inside) an element matching `selector`: one
// listener on the document for every rule, run in the order they were given.
var fp_clicks = [];

export function fp_click(selector, clicked) {
  if (!fp_clicks.length) {
    fp_listen(document, 'click', function (event) {
      fp_clicks.forEach(function (click) {
        if (fp_match(event.target, click[0], false)) click[1]();
      });
    });
  }
  fp_clicks.push([selector, clicked]);
}

// `seen()` the first time each element matching `selector` comes into view; false
// when the browser has no IntersectionObserver.
export function fp_seen(selector, seen) {
  var observer;
  try {
    observer = new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        if (entry.isIntersecting) {
          observer.unobserve(entry.target);
          seen();
        }
      });
    });
  } catch (e) {
    return false;
  }
  document.querySelectorAll(selector).forEach(function (element) {
    observer.observe(element);
  });
  return true;
}

// Asks the collector for the visitor's web session and calls `callback` with
// `{ id, shortId }`, or null when there is none; false, asking nothing, before init
// or without consent to track. Where to ask comes from `ac.state()` (the visitor,
// the deployment and where batches go).
export function fp_session() {
  var callback = fp_args[1], state, text = function (key) {
    var value = fp_prop(state, key);
    return typeof value == 'string' ? value : '';
  };
  try {
    state = fp_own.state();
  } catch (e) {}
  var visitor = text('visitorId'), url = text('url');
  if (!visitor || url.slice(-5) != 'batch') return false;
  fp_ask(url.slice(0, -5) + 'session?deploymentId=' + encodeURIComponent(text('deploymentId')) + '&visitorId=' + encodeURIComponent(visitor), callback, 1);
  return true;
}

// Asks `url`, again a second later while the collector has no session yet (404) or
// is busy (429, 5xx), ten times at most. What the page's function throws stays with
// it.
function fp_ask(url, callback, attempt) {
  var answer = function (session) {
    try {
      callback(session);
    } catch (e) {}
  };
  var again = function () {
    if (attempt < 10) setTimeout(function () { fp_ask(url, callback, attempt + 1); }, 1000);
    else answer(null);
  };
  fetch(url).then(function (response) {
    var status = response.status, json;
    if (status == 200) {
      try {
        json = response.json();
      } catch (e) {}
    }
    if (json) {
      // An answer that is not the session's JSON (a proxy's page) tells nothing.
      json.then(function (body) {
        answer({ id: fp_prop(body, 'id'), shortId: fp_prop(body, 'shortId') });
      }, function () {
        answer(null);
      });
    } else if (status == 404 || status == 429 || status >= 500) again();
    else answer(null);
  }, again);
}

function fp_prop(object, key) {
  try {
    return Reflect.get(object, key);
  } catch (e) {}
}

// How far the page is scrolled, in `fp_values`: `scrollY`, `innerHeight` (0 when a
// page has made it something else than a number) and the document's height; false
// without a document element.
export function fp_scroll() {
  var w = window, root = w.document.documentElement, height = w.innerHeight;
  fp_values = [+w.scrollY, typeof height == 'number' ? height : 0, root && root.scrollHeight | 0];
  return !!root;
}

// `handler` for `kind` on `target`, for the page's lifetime: capturing, so that a page
// that stops the event's propagation does not hide it, and passive.
function fp_listen(target, kind, handler) {
  target.addEventListener(kind, handler, { capture: true, passive: true });
}

// Form tracking: a form matching a tracked selector (the first that matches gives
// its rule) is started when the visitor types into it (`input`, `change`) and is
// reported when submitted, and as abandoned while still started when the page is
// left or closed (`pagehide`: leaving, not only hiding it, as a visitor who switches
// tabs comes back to the form) or when it is gone after the single-page app moved
// on. Listeners sit on the document, so forms rendered later count too. `report`,
// given with the first selector, is the module's: it gets the form, with its rule and
// 1 if submitted (else 0) in `fp_values`.
var fp_selectors = [], fp_started = [], fp_report;

export function fp_track(selector, report) {
  if (!fp_selectors.length) {
    fp_report = report;
    ['input', 'change', 'submit'].forEach(function (kind) {
      var submit = kind == 'submit';
      fp_listen(document, kind, function (event) {
        var form = fp_form(event, submit), rule = -1, at = -1, i;
        for (i = 0; form && rule < 0 && i < fp_selectors.length; i++) {
          if (fp_match(form, fp_selectors[i], true)) rule = i;
        }
        if (rule < 0) return;
        // A form is started at most once.
        for (i = 0; i < fp_started.length; i++) if (fp_started[i][0] == form) at = i;
        if (submit) {
          if (at >= 0) fp_started.splice(at, 1);
          fp_send(form, rule, 1);
        } else if (at < 0) fp_started.push([form, rule]);
      });
    });
    // Before the SDK's own `pagehide` handler (capturing listeners run first), so
    // that the event goes out in the page's last beacon.
    fp_listen(window, 'pagehide', function () {
      fp_abandon(true);
    });
    fp_hooks.push(function () {
      fp_abandon(false);
    });
  }
  fp_selectors.push(selector);
}

// Reports the started forms as abandoned: all of them, or only those no longer in
// the document.
function fp_abandon(all) {
  var gone = fp_started.filter(function (started) {
    return all || !started[0].isConnected;
  });
  fp_started = fp_started.filter(function (started) {
    return gone.indexOf(started) < 0;
  });
  gone.forEach(function (started) {
    fp_send(started[0], started[1], 0);
  });
}

// The form being reported, for `fp_fields`: it is not handed to the module at all.
var fp_sending;

function fp_send(form, rule, submitted) {
  fp_values = [rule, submitted];
  fp_sending = form;
  fp_report();
}

// The form an event happened in, or null; for `submit`, only a form itself.
function fp_form(event, submit) {
  var target = event.target;
  if (!(target instanceof (submit ? HTMLFormElement : Element))) return null;
  var form = target.closest('form');
  return form instanceof HTMLFormElement ? form : null;
}

// Whether `element` is inside (or is) an element matching `selector`, or with `self`
// whether it matches itself; false for a selector the browser cannot parse, and when
// `element` is none (an event's target may be the document).
function fp_match(element, selector, self) {
  if (!(element instanceof Element)) return false;
  try {
    return !!(self ? element.matches(selector) : element.closest(selector));
  } catch (e) {
    return false;
  }
}

// Whether the browser can parse `selector`.
export function fp_valid(selector) {
  try {
    document.querySelector(selector);
    return true;
  } catch (e) {
    return false;
  }
}


// `object[key] = value`, on an object of the module's own (no setter to throw).
export function fp_set(object, key, value) {
  object[key] = value;
}

// Whether the page has a `window` and, when `document` is 1, a document.
export function fp_there(document) {
  return typeof window != 'undefined' && (!document || !!window.document);
}

// Calls `scrolled` on each scroll of the page.
export function fp_on_scroll(scrolled) {
  fp_listen(window, 'scroll', scrolled);
}

// `object[key] = value` unless `keep` and the object has `key` (an object of the
// module's own); whether it set it.
export function fp_store(object, key, value, keep) {
  if (keep && key in object) return false;
  object[key] = value;
  return true;
}

