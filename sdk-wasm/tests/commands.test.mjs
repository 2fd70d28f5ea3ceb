// How `host.js` reads the page's `ac(...)` calls (`fp_ac`): what it refuses and how it
// says so, what it answers itself (handlers, `ready`), and what it hands the module's
// `command` export, which is a stub here that logs its arguments. With Node's built-in
// test runner (`node --test sdk-wasm/tests/`, run by `cargo xtask test`); its own
// process, so its own `host.js` state: the tests run in order, as one page would, and
// `init` happens once. The rules shared with the Rust side (names, campaign
// parameters, the attributes' JSON) come from `vectors/names.json`, which a Rust test
// keeps equal to the protocol crate.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { fp_ac, fp_cookie, fp_emit, fp_fail, fp_init, fp_ping, fp_report, fp_result, fp_run, fp_settle, fp_setup, fp_wait, fpCampaignParameters, fpMembers, fpNameProblem, fpObject, fpReadOptions } from '../src/web/host.js';

const vectors = JSON.parse(readFileSync(new URL('./vectors/names.json', import.meta.url), 'utf8'));

// The page around `host.js`: just enough of a browser for its commands.
globalThis.addEventListener = () => {};
globalThis.document = {
  addEventListener() {},
  location: { href: 'https://shop.example/p?q=shoes&utm_source=news#top' },
  title: 'Shoes',
  referrer: '',
  documentElement: { getAttribute: () => 'en' },
  querySelector: () => null,
  // The cookies the page was given, as `document.cookie` writes receive them.
  written: [],
  get cookie() {
    return '_footpath_consent=granted; other=1';
  },
  set cookie(text) {
    this.written.push(text);
  },
};
globalThis.location = { protocol: 'https:' };
globalThis.screen = { width: 1280, height: 800 };
// (Node from 21 on has a `navigator` of its own.)
Object.defineProperty(globalThis, 'navigator', { value: { language: 'en-GB' }, configurable: true });
globalThis.devicePixelRatio = 2;
globalThis.innerWidth = 1200;
globalThis.innerHeight = 700;

// What the module's `command` export was handed, and what it answers (1: it took effect).
const module = { calls: [], answer: 1 };
const COMMAND = { init: 0, pageview: 1, record: 2, identify: 3, logout: 4, consent: 5, optOut: 6, optIn: 7 };
fp_init(
  () => {},
  (which, number, handle, a, b) => {
    module.calls.push({ which, number, handle, a, b });
    return module.answer;
  },
  'https://cdn.example/sdk/footpath.js',
);

// Runs `ac(...)` calls and gives what they printed on the console, what the page's
// functions heard, and what the module was handed.
const heard = [];
function ac(...calls) {
  const printed = [];
  const saved = console.error;
  console.error = (text) => printed.push(text);
  module.calls = [];
  heard.length = 0;
  try {
    for (const args of calls) fp_ac(args);
  } finally {
    console.error = saved;
  }
  return { printed, heard: [...heard], module: module.calls };
}

// A page function that notes what it hears.
const note = (name) => (...args) => heard.push(name + ' ' + args.map((arg) => (arg instanceof Error ? 'Error(' + arg.message + ')' : JSON.stringify(arg))).join(' '));

test('names follow the protocol, and the campaign parameters are its own', () => {
  for (const [name, reason] of vectors.names) assert.equal(fpNameProblem(name), reason, name);
  assert.deepEqual(fpCampaignParameters(), vectors.campaign);
});

test('attributes are written as the Rust encoder writes them', () => {
  assert.equal(fpObject('attributes', fpMembers(JSON.parse(vectors.attributes), 'attributes')), vectors.json);
  assert.equal(fpObject('attributes', fpMembers(undefined, 'attributes')), '', 'none: left out');
  // The Journey API's `{ dataType, value }` shape, and a lone surrogate made well-formed.
  const typed = { sku: { dataType: 'String', value: 'BOOT-1' }, price: { value: 139.5, dataType: 'Number' }, cut: 'a\ud83d' };
  // Only an own `value`: a form field's inherited one is the page's, not an attribute.
  class Field {
    get value() {
      return 'secret';
    }
  }
  assert.throws(() => fpMembers({ password: new Field() }, 'attributes'), (thrown) => thrown == 'attributes.password must be a string, finite number or boolean');
  assert.equal(fpObject('attributes', fpMembers(typed, 'attributes')), ',"attributes":{"sku":"BOOT-1","price":139.5,"cut":"a\ufffd"}');
});

test('attributes are refused with a reason that names them', () => {
  const cases = [
    [null, 'attributes must be an object'],
    [['a'], 'attributes must be an object'],
    [Object.fromEntries(Array.from({ length: 51 }, (_, i) => ['a' + i, 1])), 'attributes may have at most 50 entries'],
    [{ 'bad-name': 1 }, "attributes: name 'bad-name' may contain only letters, digits and _"],
    [{ x: {} }, 'attributes.x must be a string, finite number or boolean'],
    [{ n: Infinity }, 'attributes.n must be a string, finite number or boolean'],
    [{ f: () => 1 }, 'attributes.f must be a string, finite number or boolean'],
    [{ s: 'é'.repeat(513) }, 'attributes.s is longer than 1024 bytes'],
  ];
  for (const [given, reason] of cases) assert.throws(() => fpMembers(given, 'attributes'), (thrown) => thrown == reason, reason);
  // 1,024 bytes exactly is fine.
  assert.equal(fpMembers({ s: 'é'.repeat(512) }, 'attributes').length, 1);
});

test("init's options: each problem is reported, and the option keeps its default", () => {
  const [defaults, none] = fpReadOptions(undefined);
  assert.deepEqual(none, []);
  assert.deepEqual(
    [defaults.url, defaults.days, defaults.timeout, defaults.search, defaults.pageviewOff, defaults.consent, defaults.gpc, defaults.dnt],
    ['https://cdn.example', 365, 1.2e6, ['q'], 0, 'granted', true, false],
    'the collector is where the script came from',
  );
  const [options, problems] = fpReadOptions({
    cookieExpiryDays: 0,
    pageview: 'sometimes',
    colour: 'red',
    globalTraitsMapper: null,
    region: 'use1',
    sessionTimeoutMinutes: 1.5,
    searchQueryParameters: ['s', 1],
    excludedQueryParameters: ['token'],
    collectorUrl: 'ftp://c.example',
    constructor: 1,
    consent: 'pending',
  });
  assert.deepEqual(problems, [
    "option 'cookieExpiryDays' must be 1 to 3650",
    "option 'pageview' must be 'auto', 'once' or 'off'",
    "option 'colour' is not an option",
    "option 'searchQueryParameters' must be an array of strings",
    "option 'collectorUrl' must be an http(s) URL",
    "option 'constructor' is not an option",
  ]);
  assert.deepEqual([options.days, options.timeout, options.search, options.excluded, options.url, options.consent], [365, 90000, ['q'], ['token'], 'https://cdn.example', 'pending']);
  const [shaped] = fpReadOptions({ cookieDomain: 'example.com', cookieExpiryDays: 2.5, pageview: 'off', keepUrlFragment: true, honorDoNotTrack: true });
  assert.deepEqual([shaped.domain, shaped.days, shaped.pageviewOff, shaped.keep, shaped.dnt], ['example.com', 2, 1, true, true]);
  assert.throws(() => fpReadOptions('fast'), (thrown) => thrown == 'options must be an object');
  // What is checked is what is kept: an index getter is read once.
  let reads = 0;
  const shifty = ['s'];
  Object.defineProperty(shifty, 0, { enumerable: true, get: () => (reads++ ? {} : 's') });
  const [kept, fine] = fpReadOptions({ searchQueryParameters: shifty });
  assert.deepEqual([kept.search, fine, reads], [['s'], [], 1]);
});

test('before init: commands are refused (a callback hears it), handlers are held', () => {
  const onError = note('error');
  const once = note('once');
  const result = ac(
    ['on', 'error', onError],
    ['once', 'error', once],
    ['record', 'too_early', note('callback')],
    [],
    ['shout'],
    ['on', 'click', note('click')],
    ['on', 'error', 'not a function'],
    ['load', 'clickEvents: needs 1 to 50 rules'],
    ['session', 1],
  );
  assert.deepEqual(result.printed, [
    "[footpath] ac('record'): call init first",
    "[footpath] ac(''): needs a command name",
    "[footpath] ac('shout'): is not a command",
    "[footpath] ac('on'): unknown event",
    "[footpath] ac('on'): needs a function",
    "[footpath] ac('load'): clickEvents: needs 1 to 50 rules",
    "[footpath] ac('session'): is for the plugin module",
  ]);
  const told = (command, message) => `{"command":"${command}","message":"[footpath] ac('${command}'): ${message}"}`;
  assert.deepEqual(result.heard, [
    'error ' + told('record', 'call init first'),
    'once ' + told('record', 'call init first'),
    "callback Error([footpath] ac('record'): call init first)",
    'error ' + told('', 'needs a command name'),
    'error ' + told('shout', 'is not a command'),
    'error ' + told('on', 'unknown event'),
    'error ' + told('on', 'needs a function'),
    'error ' + told('load', 'clickEvents: needs 1 to 50 rules'),
    'error ' + told('session', 'is for the plugin module'),
  ]);
  assert.deepEqual(result.module, [], 'the module heard nothing');
  // `off` removes the handlers of that event holding that function, no other.
  fp_ac(['on', 'session:ended', onError]);
  const after = ac(['off', 'error', onError], ['shout']);
  assert.deepEqual(after.heard, []);
  fp_emit(2, 's0');
  fp_run();
  assert.deepEqual(heard, ['error {"sessionId":"s0"}']);
  ac(['off', 'session:ended', onError]);
});

test('init: the module gets what it keeps; problems are reported; ready handlers are called', () => {
  const failed = ac(['init'], ['init', '']);
  assert.deepEqual(failed.printed, ["[footpath] ac('init'): needs a deployment id", "[footpath] ac('init'): needs a deployment id"]);
  const options = {
    sessionTimeoutMinutes: 1.5,
    pageview: 'off',
    consent: 'pending',
    colour: 'red',
    cookieDomain: 'example.com',
    cookieExpiryDays: 2,
    searchQueryParameters: ['s', 'q'],
    excludedQueryParameters: ['token'],
    keepUrlFragment: true,
  };
  // A getter in the options that calls `init` itself: that inner `init` is taken,
  // the outer one refused.
  const sneaky = {
    get region() {
      fp_ac(['init', 'demo"1', options]);
      return 'use1';
    },
  };
  const result = ac(['on', 'ready', note('ready')], ['init', 'outer', sneaky]);
  assert.deepEqual(result.module, [{ which: COMMAND.init, number: 90000, handle: 1, a: '"demo\\"1"', b: 'pending' }]);
  assert.deepEqual(result.printed, ["[footpath] ac('init'): option 'colour' is not an option", "[footpath] ac('init'): already initialised"]);
  assert.deepEqual(result.heard, ['ready ']);
  // Later `ready` handlers are called at once; init happens once.
  const later = ac(['on', 'ready', note('late')], ['init', 'demo']);
  assert.deepEqual(later.heard, ['late ']);
  assert.deepEqual(later.printed, ["[footpath] ac('init'): already initialised"]);
  assert.deepEqual(later.module, []);
});

test("cookies: set with the site's domain and lifetime, Secure on https; read by name", () => {
  document.written.length = 0;
  fp_cookie('_footpath_vid', 1, 'v1');
  fp_cookie('_footpath_vid', 1, '');
  assert.deepEqual(document.written, [
    '_footpath_vid=v1; Max-Age=172800; Path=/; SameSite=Lax; Domain=example.com; Secure',
    '_footpath_vid=; Max-Age=0; Path=/; SameSite=Lax; Domain=example.com; Secure',
  ]);
  fp_cookie('_footpath_consent', 0, '');
  assert.equal(fp_result(), 'granted');
  assert.equal(document.written.length, 2, 'reading writes nothing');
});

test('record: the name, the attributes as JSON and the callback go to the module', () => {
  const callback = note('callback');
  const result = ac(['record', 'cart_viewed', { items: 2, gift: true }, callback], ['record', 'plain'], ['record', 'first', callback]);
  assert.deepEqual(
    result.module.map(({ which, handle, a, b }) => [which, handle > 0, a, b]),
    [
      [COMMAND.record, true, 'cart_viewed', ',"attributes":{"items":2,"gift":true}'],
      [COMMAND.record, false, 'plain', ''],
      [COMMAND.record, true, 'first', ''],
    ],
  );
  // The handle holds the page's function: the module settles it through it.
  heard.length = 0;
  fp_wait('e1', result.module[0].handle);
  fp_settle('e1', 3, 'e1');
  fp_run();
  assert.deepEqual(heard, ['callback null {"id":"e1"}']);
});

test('record: refusals name what is wrong, and its callback hears them', () => {
  const result = ac(
    ['record', 'bad-name', note('a')],
    ['record', 'a', { x: {} }],
    ['record', 'a', {}, 'callback'],
    ['record'],
  );
  assert.deepEqual(result.printed, [
    "[footpath] ac('record'): event name 'bad-name' may contain only letters, digits and _",
    "[footpath] ac('record'): attributes.x must be a string, finite number or boolean",
    "[footpath] ac('record'): bad callback",
    "[footpath] ac('record'): needs an event name",
  ]);
  assert.deepEqual(result.heard, ["a Error([footpath] ac('record'): event name 'bad-name' may contain only letters, digits and _)"]);
  assert.deepEqual(result.module, []);
});

test('identify: a login id, traits merged over the ones the module took, null to log out', () => {
  const result = ac(['identify', 'ada', { plan: 'pro', email: 'ada@example.com' }], ['identify', { plan: 'team' }, note('cb')]);
  assert.deepEqual(
    result.module.map(({ which, handle, a, b }) => [which, handle > 0, a, b]),
    [
      [COMMAND.identify, false, ',"loginId":"ada"', ',"traits":{"plan":"pro","email":"ada@example.com"}'],
      // The later value in the earlier place, as the Rust map kept it.
      [COMMAND.identify, true, '', ',"traits":{"plan":"team","email":"ada@example.com"}'],
    ],
  );
  // Not taken (consent denied): the traits are not kept.
  module.answer = 0;
  ac(['identify', { gift: true }]);
  module.answer = 1;
  const next = ac(['identify', { tier: 2 }]);
  assert.equal(next.module[0].b, ',"traits":{"plan":"team","email":"ada@example.com","tier":2}');
  const out = ac(['identify', null, note('out')], ['identify', { after: true }]);
  assert.deepEqual(
    out.module.map(({ which, a, b }) => [which, a, b]),
    [
      [COMMAND.logout, '', ''],
      [COMMAND.identify, '', ',"traits":{"after":true}'],
    ],
  );
});

test('identify: refusals, with the callback told', () => {
  // 30 traits taken; 30 more would make 60 on every later event, which the collector
  // refuses: refused here. 20 more make 50, the most.
  const traits = (prefix, count) => Object.fromEntries(Array.from({ length: count }, (_, i) => [prefix + i, i]));
  ac(['identify', null], ['identify', traits('a', 30)]);
  const result = ac(['identify', null, {}], ['identify', 'ada', {}, note('cb'), 'extra'], ['identify', ''], ['identify', traits('b', 30)], ['identify', traits('c', 20)]);
  assert.deepEqual(result.printed, [
    "[footpath] ac('identify'): log-out takes no traits",
    "[footpath] ac('identify'): too many arguments",
    "[footpath] ac('identify'): bad login id",
    "[footpath] ac('identify'): traits may have at most 50 entries, with those given before",
  ]);
  assert.equal(result.module.length, 1);
  assert.equal(JSON.parse('{' + result.module[0].b.slice(1) + '}').traits.c19, 19);
  assert.deepEqual(result.heard, ["cb Error([footpath] ac('identify'): too many arguments)"]);
});

test('pageview: its facts, with its own location and title, and its attributes', () => {
  const result = ac(['pageview'], ['pageview', { location: '/cart?token=x#part', title: 'Cart', customAttributes: { step: 1 }, traitsMapper: [] }]);
  const [plain, own] = result.module;
  assert.equal(plain.which, COMMAND.pageview);
  const page = (facts) => JSON.parse('{' + facts.slice(1) + '}');
  // The site's options: search parameters `s` then `q`, `token` left out, the
  // fragment kept.
  assert.deepEqual(page(plain.a).page, { url: 'https://shop.example/p?q=shoes&utm_source=news#top', title: 'Shoes', lang: 'en', searchQuery: 'shoes', campaign: { utm_source: 'news' } });
  assert.deepEqual(page(own.a).page, { url: 'https://shop.example/cart#part', title: 'Cart', lang: 'en' });
  assert.deepEqual(page(own.a).context, { browserLang: 'en-GB', screenWidth: 1280, screenHeight: 800, screenDensity: 200, viewportWidth: 1200, viewportHeight: 700 });
  assert.equal(own.b, ',"attributes":{"step":1}');
  const refused = ac(['pageview', { location: 'http://[bad' }], ['pageview', { colour: 'red' }], ['pageview', { title: 1 }], ['pageview', 'home']);
  assert.deepEqual(refused.printed, [
    "[footpath] ac('pageview'): location is not a URL",
    "[footpath] ac('pageview'): 'colour' is not a page view option",
    "[footpath] ac('pageview'): title must be a string",
    "[footpath] ac('pageview'): pageview options must be an object",
  ]);
  assert.deepEqual(refused.module, []);
});

test('consent, optOut and optIn', () => {
  const result = ac(['consent', 'granted'], ['consent', 'maybe'], ['optOut'], ['optIn']);
  assert.deepEqual(
    result.module.map(({ which, a }) => [which, a]),
    [
      [COMMAND.consent, 'granted'],
      [COMMAND.optOut, ''],
      [COMMAND.optIn, ''],
    ],
  );
  assert.deepEqual(result.printed, ["[footpath] ac('consent'): needs 'granted' or 'denied'"]);
});

test("the module's reports and session events reach the page's handlers", () => {
  ac(['on', 'session:started', note('started')], ['on', 'error', note('error')]);
  const printed = [];
  const saved = console.error;
  console.error = (text) => printed.push(text);
  heard.length = 0;
  try {
    fp_emit(1, 's1');
    fp_fail(0, 'nothing held');
    fp_ac(['record', 'x', { n: NaN }]);
  } finally {
    console.error = saved;
  }
  assert.deepEqual(heard, ['started {"sessionId":"s1"}', `error {"command":"record","message":"[footpath] ac('record'): attributes.n must be a string, finite number or boolean"}`]);
  assert.equal(printed.length, 1);
});

test('a throwing getter in the arguments is reported, not thrown into the page', () => {
  const trap = {};
  Object.defineProperty(trap, 'x', { enumerable: true, get: () => { throw Symbol('trap'); } });
  const result = ac(['record', 'a', trap, note('cb')]);
  assert.deepEqual(result.printed, ["[footpath] ac('record'): could not read its arguments"]);
  assert.deepEqual(result.heard, [
    `error {"command":"record","message":"[footpath] ac('record'): could not read its arguments"}`,
    "cb Error([footpath] ac('record'): could not read its arguments)",
  ]);
  assert.deepEqual(result.module, []);
});

test('only the strings the module takes reach it', () => {
  // Not a string, whatever it says it is: the glue would read it as one.
  const result = ac(['consent', ['granted']], ['consent', { toString: () => 'denied' }]);
  assert.deepEqual(result.printed, ["[footpath] ac('consent'): needs 'granted' or 'denied'", "[footpath] ac('consent'): needs 'granted' or 'denied'"]);
  assert.deepEqual(result.module, []);
});

test('a refused call holds no callback', () => {
  const handles = () => ac(['record', 'a', note('cb')]).module[0].handle;
  const before = handles();
  const traits = Object.fromEntries(Array.from({ length: 51 }, (_, i) => ['t' + i, i]));
  ac(['identify', null], ['identify', traits, note('refused')], ['record', 'bad-name', note('refused')]);
  assert.equal(handles(), before + 1, 'the next callback gets the next handle');
});

test("the page's throwing console and fetch do not reach the module", () => {
  const saved = console.error;
  console.error = () => {
    throw new Error('a page that broke its console');
  };
  try {
    assert.equal(fp_report('record', 'refused', ''), "[footpath] ac('record'): refused");
  } finally {
    console.error = saved;
  }
  fp_setup('https://c.example/sdk/v1/batch');
  const fetches = [];
  globalThis.fetch = (url) => {
    fetches.push(url);
    throw new TypeError('a page that broke fetch');
  };
  fp_ping('v1', 's1');
  assert.deepEqual(fetches, ['https://c.example/api/v2/journey/deployments/demo%221/customers/v1/ping?sessionId=s1']);
});
