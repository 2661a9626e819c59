// The npm `eventsource` package (a WHATWG-conformant EventSource for Node)
// against a real Herald server: what a Node service subscribing to Herald
// sees. Run by TestNodeEventSource in clients_test.go.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventSource } from 'eventsource';
import {
  cfg, skip, publish, control, tapStats, topic, struct, chat, order, orderJSON, nasty,
  assertIncreasing, waitFor, quiet,
} from './lib/harness.mjs';

const S = 'plain';
const server = cfg?.servers[S];

// open subscribes and records everything the EventSource reports. Every
// request goes through a counting fetch, so a test can tell how often the
// client (re)connected and with which Last-Event-ID.
function open(path, { types = [] } = {}) {
  const rec = { events: [], messages: [], errors: [], opens: 0, requests: [] };
  const countingFetch = (url, init) => {
    rec.requests.push({ url: String(url), lastEventId: new Headers(init?.headers).get('last-event-id') });
    return fetch(url, init);
  };
  const es = new EventSource(server.url + path, { fetch: countingFetch });
  rec.es = es;
  es.onopen = () => { rec.opens++; };
  es.onerror = (e) => { rec.errors.push({ code: e.code, message: e.message, readyState: es.readyState }); };
  es.onmessage = (e) => { rec.messages.push({ type: e.type, data: e.data, id: e.lastEventId }); };
  for (const t of types) {
    es.addEventListener(t, (e) => { rec.events.push({ type: e.type, data: e.data, id: e.lastEventId }); });
  }
  return rec;
}

const opened = (rec) => waitFor(() => rec.opens > 0 && rec.es.readyState === EventSource.OPEN, 'the EventSource to open');
const got = (rec, n, list = 'events') => waitFor(() => rec[list].length >= n, `${n} ${list} (have ${rec[list].length})`, 20000);

test('named events reach addEventListener(type); onmessage sees only type "message"', { skip }, async () => {
  const t = topic('named');
  const rec = open(`/v1/events?topic=${t}`, { types: ['orders.v1.OrderPlaced', 'custom-type', 'message'] });
  try {
    await opened(rec);
    const [a] = await publish(S, t, [order]);
    const [b] = await publish(S, t, [struct({ n: 1 })], { type: 'custom-type' });
    const [c] = await publish(S, t, [struct({ n: 2 })], { type: 'message' });
    await got(rec, 3);
    assert.deepEqual(rec.events.map((e) => [e.type, e.id]), [['orders.v1.OrderPlaced', a], ['custom-type', b], ['message', c]]);
    // Only the event typed "message" reaches onmessage: Herald always names
    // its events, so pages must use addEventListener(type).
    assert.deepEqual(rec.messages.map((e) => e.id), [c]);
    assert.deepEqual(rec.errors, []);
  } finally {
    rec.es.close();
  }
});

test('envelope=true: every event reaches onmessage, its type inside the data, gaps too', { skip }, async () => {
  const t = topic('envelope');
  const rec = open(`/v1/events?topic=${t}&envelope=true&last_event_id=not-an-id`, { types: ['orders.v1.OrderPlaced', 'herald.gap'] });
  try {
    await opened(rec);
    const [a] = await publish(S, t, [order]);
    const [b] = await publish(S, t, [struct({ n: 1 })], { type: 'custom-type' });
    await got(rec, 3, 'messages');
    // The gap first (the id was not one of this server's), then the events,
    // all as plain messages: nothing reaches the typed listeners.
    assert.deepEqual(rec.messages.map((m) => [m.type, JSON.parse(m.data).type]), [
      ['message', 'herald.gap'], ['message', 'orders.v1.OrderPlaced'], ['message', 'custom-type'],
    ]);
    assert.equal(JSON.parse(rec.messages[0].data).payload.lastEventId, 'not-an-id');
    assert.deepEqual(rec.messages.slice(1).map((m) => m.id), [a, b]);
    assert.deepEqual(JSON.parse(rec.messages[1].data).payload, orderJSON);
    assert.deepEqual(JSON.parse(rec.messages[2].data).payload, { n: 1 });
    assert.deepEqual(rec.events, []);
    assert.deepEqual(rec.errors, []);
  } finally {
    rec.es.close();
  }
});

test('filter= delivers exactly the events the expression accepts', { skip }, async () => {
  const t = topic('filter');
  const expr = encodeURIComponent('payload.currency == "EUR"');
  const rec = open(`/v1/events?topic=${t}&filter=${expr}`, { types: ['orders.v1.OrderPlaced', 'google.protobuf.Struct'] });
  try {
    await opened(rec);
    const ids = await publish(S, t, [order, struct({ n: 1 }), struct({ n: 2 }), { ...order, currency: 'USD' }, order]);
    // The EUR orders only: the USD one is false, and the Structs have no
    // currency, an error that drops them. The last event is a match, so
    // once it is in, every earlier one was decided (one topic, in order).
    await got(rec, 2);
    assert.deepEqual(rec.events.map((e) => e.id), [ids[0], ids[4]]);
  } finally {
    rec.es.close();
  }
});

test('JSON equals the published payload, non-ASCII and line breaks intact', { skip }, async () => {
  const t = topic('json');
  const types = ['orders.v1.OrderPlaced', 'google.protobuf.Struct', 'chat.v1.ChatMessage'];
  const rec = open(`/v1/events?topic=${t}`, { types });
  try {
    await opened(rec);
    const value = { text: nasty, n: 1.5, ok: true, nothing: null, list: ['ü', 2, { deep: '深い' }] };
    const ids = [
      ...(await publish(S, t, [order])),
      ...(await publish(S, t, [struct(value)])),
      ...(await publish(S, t, [chat(nasty)])),
    ];
    await got(rec, 3);
    assert.deepEqual(rec.events.map((e) => e.id), ids);
    assert.deepEqual(JSON.parse(rec.events[0].data), orderJSON);
    assert.deepEqual(JSON.parse(rec.events[1].data), value);
    assert.deepEqual(JSON.parse(rec.events[2].data), { room: 'lobby', text: nasty });
  } finally {
    rec.es.close();
  }
});

test('an event exactly at the size limit arrives whole; one byte over is refused', { skip }, async () => {
  const t = topic('big');
  const rec = open(`/v1/events?topic=${t}`, { types: ['chat.v1.ChatMessage'] });
  try {
    await opened(rec);
    const big = await control('/near-limit', { server: S, topic: t, unit: 'é€😀' });
    assert.match(big.overLimit, /over the limit/);
    await got(rec, 1);
    assert.equal(rec.events[0].id, big.id);
    const data = JSON.parse(rec.events[0].data);
    assert.equal(data.text.length, big.text.length);
    assert.ok(data.text === big.text, 'the text arrived changed');
  } finally {
    rec.es.close();
  }
});

test('a burst of 500 events arrives complete and in order', { skip }, async () => {
  const t = topic('burst');
  const rec = open(`/v1/events?topic=${t}`, { types: ['google.protobuf.Struct'] });
  try {
    await opened(rec);
    const payloads = Array.from({ length: 500 }, (_, i) => struct({ i, pad: 'x'.repeat(i % 50) }));
    const ids = await publish(S, t, payloads, { stream: true });
    await got(rec, 500);
    await quiet(100); // nothing extra may follow
    assert.equal(rec.events.length, 500);
    assert.deepEqual(rec.events.map((e) => e.id), ids);
    assert.deepEqual(rec.events.map((e) => JSON.parse(e.data).i), payloads.map((p) => p.value.i));
    assertIncreasing(ids);
  } finally {
    rec.es.close();
  }
});

for (const how of ['outage', 'restart']) {
  const what = how === 'outage' ? 'the connection drops' : 'the server restarts';
  test(`after ${what} it reconnects and gets every missed event exactly once`, { skip }, async () => {
    const t = topic(how);
    const rec = open(`/v1/events?topic=${t}`, { types: ['google.protobuf.Struct'] });
    try {
      await opened(rec);
      const before = await publish(S, t, [struct({ n: 0 }), struct({ n: 1 })]);
      await got(rec, 2);
      // The Go side cuts the connection(s) and publishes while no client
      // can reconnect.
      const { ids: missed } = await control(`/${how}`, { server: S, topic: t, payloads: [2, 3, 4, 5, 6].map((n) => struct({ n })) });
      await waitFor(() => rec.opens >= 2, 'the EventSource to reconnect', 15000);
      const after = await publish(S, t, [struct({ n: 7 })]);
      await got(rec, 8);
      await quiet(100);
      const all = [...before, ...missed, ...after];
      assert.deepEqual(rec.events.map((e) => e.id), all, 'every event exactly once, in order');
      assert.deepEqual(rec.events.map((e) => JSON.parse(e.data).n), [0, 1, 2, 3, 4, 5, 6, 7]);
      // The reconnect carried the last id seen.
      assert.ok(rec.requests.length >= 2, JSON.stringify(rec.requests));
      assert.equal(rec.requests[0].lastEventId, null);
      assert.equal(rec.requests[1].lastEventId, before[1], JSON.stringify({ requests: rec.requests, errors: rec.errors }));
      assert.ok(rec.errors.length >= 1 && rec.errors.every((e) => e.code === undefined), `errors: ${JSON.stringify(rec.errors)}`);
      assert.equal(rec.es.readyState, EventSource.OPEN);
    } finally {
      rec.es.close();
    }
  });
}

test('an unknown Last-Event-ID gets a herald.gap event and status 200, never an error', { skip }, async () => {
  const t = topic('gap');
  const [id] = await publish(S, t, [struct({ n: 1 })]);
  for (const bad of ['not-an-id', 'zzzzzzzz-1', '☃']) {
    const rec = open(`/v1/events?topic=${t}&last_event_id=${encodeURIComponent(bad)}`, { types: ['herald.gap', 'google.protobuf.Struct'] });
    try {
      await got(rec, 2);
      assert.equal(rec.events[0].type, 'herald.gap');
      const gap = JSON.parse(rec.events[0].data);
      assert.equal(gap.lastEventId, bad);
      assert.ok(gap.reason.length > 0);
      assert.equal(rec.events[1].id, id, 'then what is retained');
      assert.deepEqual(rec.errors, []);
    } finally {
      rec.es.close();
    }
  }
});

test('a refused subscription (404, 400) closes the EventSource for good', { skip }, async () => {
  const cases = [
    ['/v1/nothing?topic=a', 404],
    ['/v1/events', 400],
    ['/v1/events?topic=a..b', 400],
    ['/v1/events?topic=a&unknown=1', 400],
  ];
  // All at once, then five retry intervals in which none may try again.
  const recs = cases.map(([path]) => open(path));
  await waitFor(() => recs.every((r) => r.errors.length > 0), 'an error from each');
  await quiet(5 * server.retryMs);
  cases.forEach(([path, status], i) => {
    const rec = recs[i];
    assert.equal(rec.es.readyState, EventSource.CLOSED, `${path}: readyState`);
    assert.equal(rec.errors[0].code, status, `${path}: status`);
    assert.equal(rec.requests.length, 1, `${path}: requests`);
    assert.equal(rec.errors.length, 1, `${path}: errors`);
    assert.equal(rec.opens, 0);
    rec.es.close();
  });
  const seen = (await tapStats(S)).requests.filter((r) => cases.some(([p]) => r.target === p));
  assert.equal(seen.length, cases.length, 'the server saw one request per refused subscription');
});
