// The package's ESM entry (`index.mjs`) against a minimal fake page, with Node's
// built-in test runner: `node --test js/tests/` (run by `cargo xtask test`). The real
// snippet and loader are proven in Chromium by the end-to-end tests; these tests pin
// what `install` must do like the snippet, and what it must do better (never twice).

import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';

// Imported before any fake window exists: importing must not need one (SSR).
import { install } from '../index.mjs';

const SRC = 'https://collector.example/sdk/footpath.js';

// Just enough of a document for the snippet's steps: elements with a parent, and
// `insertBefore` / `appendChild` that record where they put what.
function fakePage({ scripts = 1, head = true } = {}) {
  const inserted = [];
  const element = (tagName, parent) => ({ tagName, parentNode: parent });
  const parent = {
    insertBefore(node, before) {
      inserted.push({ node, before, how: 'insertBefore' });
    },
  };
  const existing = Array.from({ length: scripts }, () => element('SCRIPT', parent));
  const headElement = {
    appendChild(node) {
      inserted.push({ node, how: 'appendChild' });
    },
  };
  const document = {
    head: head ? headElement : null,
    documentElement: headElement,
    createElement: (tagName) => element(tagName.toUpperCase(), null),
    getElementsByTagName: (tagName) => (tagName === 'script' ? existing : []),
  };
  return { window: {}, document, existing, inserted };
}

let page;
beforeEach(() => {
  page = fakePage();
  globalThis.window = page.window;
  globalThis.document = page.document;
});
afterEach(() => {
  delete globalThis.window;
  delete globalThis.document;
});

test('inserts one async script with the SDK URL before the first script', () => {
  install({ src: SRC });
  assert.equal(page.inserted.length, 1);
  const [{ node, before, how }] = page.inserted;
  assert.equal(how, 'insertBefore');
  assert.equal(before, page.existing[0]);
  assert.equal(node.tagName, 'SCRIPT');
  assert.equal(node.async, true);
  assert.equal(node.src, SRC);
});

test('a page without scripts gets the script in its head', () => {
  page = fakePage({ scripts: 0 });
  globalThis.document = page.document;
  install({ src: SRC });
  assert.deepEqual(
    page.inserted.map(({ node, how }) => [how, node.src]),
    [['appendChild', SRC]],
  );
});

test('the stub queues calls in order, with their arguments, and records the time', () => {
  const before = Date.now();
  const ac = install({ src: SRC });
  const callback = () => {};
  ac('init', 'shop', { region: 'euw2' });
  ac('record', 'order_completed', { value: 1 }, callback);
  assert.equal(window._footpathSdk, 'ac');
  assert.equal(typeof window.ac, 'function');
  // The loader reads `.q` as a list of `arguments` objects.
  assert.deepEqual(
    window.ac.q.map((args) => Array.from(args)),
    [
      ['init', 'shop', { region: 'euw2' }],
      ['record', 'order_completed', { value: 1 }, callback],
    ],
  );
  assert.equal(window.ac.q[0].length, 3);
  assert.ok(window.ac.l >= before && window.ac.l <= Date.now(), String(window.ac.l));
  assert.equal(ac.q, window.ac.q);
  assert.equal(ac.l, window.ac.l);
  assert.equal(ac.loaded, undefined);
});

test('a second install, or one after the snippet, inserts nothing and keeps the queue', () => {
  const first = install({ src: SRC });
  first('init', 'shop');
  const stub = window.ac;
  const second = install({ src: 'https://elsewhere.example/sdk/footpath.js' });
  second('pageview');
  assert.equal(page.inserted.length, 1);
  assert.equal(window.ac, stub);
  assert.deepEqual(stub.q.map((args) => args[0]), ['init', 'pageview']);

  // A page whose inline snippet already ran: its stub stays, no second script.
  page = fakePage();
  globalThis.window = page.window;
  globalThis.document = page.document;
  const snippetStub = function () {
    (snippetStub.q = snippetStub.q || []).push(arguments);
  };
  window.ac = snippetStub;
  install({ src: SRC })('init', 'shop');
  assert.equal(page.inserted.length, 0);
  assert.equal(window.ac, snippetStub);
  assert.equal(snippetStub.q.length, 1);
});

test('calls made after the SDK has loaded reach the SDK, not the old stub', () => {
  const ac = install({ src: SRC });
  ac('init', 'shop');
  // What the loader does: replace the global with the real function.
  const received = [];
  const sdk = (...args) => received.push(args);
  sdk.loaded = true;
  sdk.state = () => ({ visitorId: 'v' });
  window.ac = sdk;
  ac('record', 'order_completed');
  assert.deepEqual(received, [['record', 'order_completed']]);
  assert.equal(ac.loaded, true);
  assert.deepEqual(ac.state(), { visitorId: 'v' });
});

test('the global can have another name', () => {
  const tracker = install({ src: SRC, name: 'tracker' });
  tracker('init', 'shop');
  assert.equal(window._footpathSdk, 'tracker');
  assert.equal(window.ac, undefined);
  assert.equal(window.tracker.q.length, 1);
});

test('an element whose id is the global\'s name does not pass for the command function', () => {
  // Browsers expose elements with an id as globals of `window`.
  window.ac = { tagName: 'DIV' };
  install({ src: SRC })('init', 'shop');
  assert.equal(page.inserted.length, 1);
  assert.equal(window.ac.q.length, 1);
});

test('without a window, install says so and touches nothing', () => {
  delete globalThis.window;
  delete globalThis.document;
  assert.throws(() => install({ src: SRC }), /needs a browser window/);
});

test('without the SDK URL, install says so and inserts nothing', () => {
  assert.throws(() => install({}), /needs \{ src/);
  assert.throws(() => install(), /needs \{ src/);
  assert.equal(page.inserted.length, 0);
  assert.equal(window.ac, undefined);
});
