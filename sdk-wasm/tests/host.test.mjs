// The pure parts of `host.js` (the send queue's reading and merging of event texts),
// with Node's built-in test runner: `node --test sdk-wasm/tests/` (run by
// `cargo xtask test`). The vectors come from the Rust encoder (`queue_vectors.rs`
// keeps them equal to what it writes), so these tests break when either side changes
// the shape the other relies on.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

import { fp_ac, fp_emit, fp_fail, fp_hold, fp_init, fp_release, fp_report, fp_run, fp_settle, fp_wait, fpBody, fpCampaignParameters, fpCompress, fpFacts, fpHead, fpHoldCallback, fpId, fpMembers, fpNameProblem, fpObject, fpReadOptions, fpTake, fpText, fpWellFormed, utf8Bytes } from '../src/web/host.js';

const vectors = JSON.parse(readFileSync(new URL('./vectors/queue.json', import.meta.url), 'utf8'));
const facts = JSON.parse(readFileSync(new URL('./vectors/facts.json', import.meta.url), 'utf8'));
const names = JSON.parse(readFileSync(new URL('./vectors/names.json', import.meta.url), 'utf8'));

test('an event text gives its id', () => {
  assert.deepEqual(vectors.entries.map(fpId), vectors.ids);
});

test("a head ends before sentAt, whatever the deployment id holds", () => {
  // The deployment id is `demo"sentAt`: an escaped quote cannot end the head early.
  const head = fpHead(vectors.entries[0]);
  assert.ok(head.endsWith('"visitorId":"0b7e0c2a-5b9e-4a57-9f3e-1c2d3e4f5a6b"'), head);
  assert.equal(new Set(vectors.entries.map(fpHead)).size, 1);
});

test('merged texts are the batch the encoder writes', () => {
  const realNow = Date.now;
  Date.now = () => vectors.sentAt;
  try {
    assert.equal(fpBody(vectors.entries), vectors.body);
  } finally {
    Date.now = realNow;
  }
  assert.deepEqual(JSON.parse(vectors.body).events.map((event) => event.id), vectors.ids);
});

test('a request takes a run of the same head, within its limits', () => {
  const [a, b, c] = vectors.entries;
  const other = a.replace('"visitorId":"0b7e', '"visitorId":"1b7e');
  const cases = [
    // [list, byte limit, how many go]
    [[a, b, c], 1e6, 3],
    [[a, b, other, c], 1e6, 2],
    // A first entry over the limit still goes, alone.
    [[a, b], 10, 1],
    [[a, b, c], utf8Bytes(a) + 1 + utf8Bytes(b) + 1, 2],
    [Array(250).fill(c), 1e9, 100],
    [[], 1e6, 0],
  ];
  for (const [list, limit, expected] of cases) assert.equal(fpTake(list, limit).length, expected);
});

test('sizes are UTF-8 bytes', () => {
  for (const [text, bytes] of [['', 0], ['abc', 3], ['café', 5], ['—', 3], ['😀', 4]]) {
    assert.equal(utf8Bytes(text), bytes, text);
  }
});

test('bodies are gzip where CompressionStream exists, as they are otherwise', async () => {
  const body = vectors.body;
  const gzip = await new Promise((resolve) => fpCompress(body, resolve));
  assert.equal(gzip.type, 'text/plain');
  const bytes = Buffer.from(await gzip.arrayBuffer());
  // The collector recognises gzip by these bytes (beacons cannot say Content-Encoding).
  assert.deepEqual([...bytes.subarray(0, 3)], [0x1f, 0x8b, 0x08]);
  assert.equal(gunzipSync(bytes).toString('utf8'), body);
  const saved = globalThis.CompressionStream;
  globalThis.CompressionStream = undefined;
  try {
    assert.equal(await new Promise((resolve) => fpCompress(body, resolve)), body);
  } finally {
    globalThis.CompressionStream = saved;
  }
});

test("a page's facts are the JSON the Rust encoder writes for them", () => {
  assert.equal(facts.length, 3);
  for (const { fields, names, values, searched, json } of facts) {
    assert.equal(fpFacts(fields, names, values, searched), json);
  }
});

test('a fact loses the separator, and a lone surrogate becomes U+FFFD as it did in the glue', () => {
  assert.equal(fpText('a\x01b'), 'ab');
  assert.equal(fpText(1280), '1280');
  assert.equal(fpText('cut \ud83d emoji \ud83d\ude00'), 'cut \ufffd emoji \ud83d\ude00');
  // The collector's JSON parser refuses a lone surrogate's escape, which JSON.stringify writes.
  assert.equal(JSON.stringify(fpText('\udc00')), '"\ufffd"');
});

// Holds a page function as a callback argument would be, by handle.
const hold = fpHoldCallback;

test("page functions run after the module's call, in order, a nested command's first", () => {
  const log = [];
  const inner = hold((error) => log.push('inner ' + error.message));
  const outer = hold((arg, result) => {
    log.push('outer ' + JSON.stringify(result));
    // The page calls `ac(...)` again from its function: that command's calls run
    // when it ends, before those still waiting from the first.
    fp_fail(inner, 'refused');
    fp_run();
  });
  const last = hold((error) => {
    log.push('last ' + error.message);
    throw new Error('a throwing page function stops nothing');
  });
  const after = hold((error) => log.push('after ' + error.message));
  fp_wait('e1', outer);
  fp_settle('e1', 3, 'e1');
  fp_fail(last, 'no');
  fp_fail(after, 'also no');
  assert.deepEqual(log, [], 'nothing runs before fp_run');
  fp_run();
  assert.deepEqual(log, ['outer {"id":"e1"}', 'inner refused', 'last no', 'after also no']);
  // A callback is let go once called: it is not called again.
  fp_fail(last, 'again');
  fp_run();
  assert.equal(log.length, 4);
});

test("an event's callback is called once, when the event is settled", () => {
  const log = [];
  const callback = hold((...args) => log.push(JSON.stringify(args)));
  const other = hold((...args) => log.push('other ' + args[0].message));
  fp_wait('e1', callback);
  fp_wait('e2', other);
  fp_settle('e0', 3, 'e0');
  fp_settle('e1', 3, 'e1');
  fp_settle('e1', 3, 'e1');
  fp_settle('e2', 4, 'refused');
  fp_run();
  assert.deepEqual(log, ['[null,{"id":"e1"}]', 'other refused']);
});

// A grant's path (`fp_release('')` hands the events to the send queue) is covered by
// the browser tests (`consent.rs`), where the queue has a page to send from.
test('events held while consent is pending are bounded, keeping the first; a denial settles them', () => {
  const log = [];
  const callbacks = {};
  for (const id of ['first', 'last', 'beyond']) {
    callbacks[id] = hold((error) => log.push(id + ': ' + error.message));
  }
  fp_wait('first', callbacks.first);
  fp_wait('last', callbacks.last);
  fp_wait('beyond', callbacks.beyond);
  fp_hold('first', 'text', 'no consent');
  for (let i = 1; i < 199; i++) fp_hold('e' + i, 'text', 'no consent');
  fp_hold('last', 'text', 'no consent');
  // The 201st is dropped at once.
  fp_hold('beyond', 'text', 'no consent');
  fp_run();
  assert.deepEqual(log, ['beyond: no consent']);
  fp_release('no consent');
  fp_run();
  assert.deepEqual(log, ['beyond: no consent', 'first: no consent', 'last: no consent']);
  // Released: nothing is held any more.
  fp_release('again');
  fp_run();
  assert.equal(log.length, 3);
});
