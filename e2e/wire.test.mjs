// The bytes on the wire, read with Node's fetch and parsed by the npm
// `eventsource-parser` package, a parser independent of Herald's writer.
// These are the points of shared/SSE-CHECKLIST.md where only bytes matter.
// Run by TestWire in clients_test.go.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createParser } from 'eventsource-parser';
import {
  cfg, skip, publish, topic, struct, chat, nasty, seq, assertIncreasing, waitFor,
} from './lib/harness.mjs';

const S = 'plain';
const server = cfg?.servers[S];

// stream opens path with fetch and records the raw bytes (with arrival
// times) and what eventsource-parser makes of them.
async function stream(path, { name = S, headers = {} } = {}) {
  const ac = new AbortController();
  const t0 = Date.now();
  const res = await fetch(cfg.servers[name].url + path, {
    headers: { accept: 'text/event-stream', 'accept-encoding': 'gzip, deflate, br', ...headers },
    signal: ac.signal,
  });
  const rec = {
    res, headersAfter: Date.now() - t0, chunks: [], text: '', bytes: 0,
    events: [], comments: [], retries: [], parseErrors: [], readError: null,
    close: () => ac.abort(),
  };
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  const parser = createParser({
    onEvent: (e) => rec.events.push({ ...e, at: Date.now() - t0 }),
    onComment: (c) => rec.comments.push({ comment: c, at: Date.now() - t0 }),
    onRetry: (r) => rec.retries.push(r),
    onError: (e) => rec.parseErrors.push(e),
  });
  if (res.body) {
    (async () => {
      const reader = res.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        rec.chunks.push({ at: Date.now() - t0, bytes: value });
        rec.bytes += value.length;
        const s = decoder.decode(value, { stream: true });
        rec.text += s;
        parser.feed(s);
      }
    })().catch((e) => { if (e.name !== 'AbortError') rec.readError = e; });
  }
  return rec;
}

const lines = (rec) => rec.text.split('\n');

test('S1 status 200 and Content-Type text/event-stream', { skip }, async () => {
  const rec = await stream(`/v1/events?topic=${topic('s1')}`);
  try {
    assert.equal(rec.res.status, 200);
    assert.equal(rec.res.headers.get('content-type'), 'text/event-stream');
  } finally {
    rec.close();
  }
});

test('S2 headers and the retry hint arrive at once, before any event', { skip }, async () => {
  // Nothing is published and the heartbeat is 15 s away: only a server
  // that flushes on connect gets bytes to the client within a second.
  const rec = await stream(`/v1/events?topic=${topic('s2')}`);
  try {
    assert.ok(rec.headersAfter < 1000, `headers after ${rec.headersAfter} ms`);
    await waitFor(() => rec.chunks.length > 0, 'the first bytes', 1000);
    assert.equal(rec.events.length, 0);
    assert.deepEqual(rec.retries, [server.retryMs]);
  } finally {
    rec.close();
  }
});

test('S4 UTF-8 without a byte order mark', { skip }, async () => {
  const t = topic('s4');
  const rec = await stream(`/v1/events?topic=${t}`);
  try {
    await publish(S, t, [chat(nasty), struct({ s: '\uFEFF at the start of a value' })]);
    await waitFor(() => rec.events.length === 2, 'two events');
    const first = rec.chunks[0].bytes;
    assert.ok(!(first[0] === 0xef && first[1] === 0xbb && first[2] === 0xbf), 'the stream starts with a BOM');
    // The fatal decoder has already proved the bytes are UTF-8; no line may
    // start with a BOM either.
    for (const l of lines(rec)) assert.ok(!l.startsWith('\uFEFF'), `line starts with a BOM: ${JSON.stringify(l)}`);
    assert.equal(JSON.parse(rec.events[0].data).text, nasty);
    assert.equal(rec.readError, null);
  } finally {
    rec.close();
  }
});

test('S5 no raw CR or LF inside a field: payloads cannot inject fields or events', { skip }, async () => {
  const t = topic('s5');
  const rec = await stream(`/v1/events?topic=${t}`);
  try {
    const [id] = await publish(S, t, [chat(nasty)]);
    await waitFor(() => rec.events.length === 1, 'the event');
    assert.ok(!rec.text.includes('\r'), 'a raw CR on the wire');
    for (const l of lines(rec)) {
      assert.match(l, /^(|:.*|(id|event|data|retry): .*)$/s, `unexpected line ${JSON.stringify(l)}`);
    }
    const [ev] = rec.events;
    assert.equal(ev.id, id);
    assert.equal(ev.event, 'chat.v1.ChatMessage');
    assert.deepEqual(JSON.parse(ev.data), { room: 'lobby', text: nasty });
    // A type with a line break is refused when published, not sanitised.
    const refused = await publish(S, t, [struct({})], { type: 'evil\ndata: x', allowError: true });
    assert.equal(refused.error?.code, 'InvalidArgument');
  } finally {
    rec.close();
  }
});

test('S6 "data: " with exactly one space', { skip }, async () => {
  const t = topic('s6');
  const rec = await stream(`/v1/events?topic=${t}`);
  try {
    await publish(S, t, [struct({ k: ' leading space' }), chat(' ')]);
    await waitFor(() => rec.events.length === 2, 'two events');
    const data = lines(rec).filter((l) => l.startsWith('data:'));
    assert.equal(data.length, 2);
    for (const l of data) assert.match(l, /^data: [^ ]/);
    for (const e of rec.events) assert.ok(!e.data.startsWith(' '), `data starts with a space: ${JSON.stringify(e.data)}`);
    assert.equal(JSON.parse(rec.events[1].data).text, ' ');
  } finally {
    rec.close();
  }
});

test('S7 every event ends with a blank line and is flushed at once', { skip }, async () => {
  const t = topic('s7');
  const rec = await stream(`/v1/events?topic=${t}`);
  try {
    await waitFor(() => rec.chunks.length > 0, 'the retry hint');
    for (let i = 0; i < 3; i++) {
      const sent = Date.now();
      await publish(S, t, [struct({ i })]);
      // One event, alone on an idle stream: it is dispatched only if its
      // blank line arrived, and it arrives only if the server flushed.
      await waitFor(() => rec.events.length === i + 1, `event ${i}`, 2000);
      assert.ok(Date.now() - sent < 1000);
      assert.ok(rec.text.endsWith('\n\n'), `the stream so far ends ${JSON.stringify(rec.text.slice(-20))}`);
    }
  } finally {
    rec.close();
  }
});

test('S9 ids are short CORS-safe ASCII and increase', { skip }, async () => {
  const t1 = topic('s9a');
  const t2 = topic('s9b');
  const rec = await stream(`/v1/events?topic=${t1}&topic=${t2}`);
  try {
    const ids = [];
    for (let i = 0; i < 20; i++) ids.push(...(await publish(S, i % 2 ? t1 : t2, [struct({ i })])));
    await waitFor(() => rec.events.length === 20, '20 events');
    assert.deepEqual(rec.events.map((e) => e.id), ids);
    for (const id of ids) {
      assert.match(id, /^[A-Za-z0-9._~:-]{1,128}$/);
      seq(id);
    }
    assertIncreasing(ids);
  } finally {
    rec.close();
  }
});

test('S11 retry is digits only', { skip }, async () => {
  const rec = await stream(`/v1/events?topic=${topic('s11')}`);
  try {
    await waitFor(() => rec.retries.length > 0, 'the retry hint');
    const retry = lines(rec).filter((l) => l.startsWith('retry'));
    assert.deepEqual(retry, [`retry: ${server.retryMs}`]);
    assert.deepEqual(rec.retries, [server.retryMs]);
  } finally {
    rec.close();
  }
});

test('S12 idle streams get a comment line every heartbeat interval', { skip }, async () => {
  // The "heartbeat" server beats every heartbeatMs; the default is 15 s
  // (checked in Go: TestDefaultsFitTheChecklist).
  const hb = cfg.servers.heartbeat;
  const rec = await stream(`/v1/events?topic=${topic('s12')}`, { name: 'heartbeat' });
  try {
    await waitFor(() => rec.comments.length >= 3, 'three heartbeats', 20 * hb.heartbeatMs);
    for (let i = 1; i < rec.comments.length; i++) {
      const gap = rec.comments[i].at - rec.comments[i - 1].at;
      assert.ok(gap < 3 * hb.heartbeatMs, `${gap} ms between heartbeats`);
    }
    assert.equal(rec.events.length, 0, 'a heartbeat must not surface as an event');
    assert.ok(lines(rec).some((l) => l.startsWith(':')));
  } finally {
    rec.close();
  }
});

test('S13 no-cache, X-Accel-Buffering: no, no Content-Length, never compressed', { skip }, async () => {
  const t = topic('s13');
  const rec = await stream(`/v1/events?topic=${t}`);
  try {
    const h = rec.res.headers;
    assert.equal(h.get('cache-control'), 'no-cache');
    assert.equal(h.get('x-accel-buffering'), 'no');
    assert.equal(h.get('content-length'), null);
    assert.equal(h.get('content-encoding'), null, 'compressed although it is a stream');
    // Not buffered: a small event is on the wire on its own, at once.
    await publish(S, t, [struct({ small: true })]);
    await waitFor(() => rec.events.length === 1, 'the event', 2000);
  } finally {
    rec.close();
  }
});

test('S17 every block Herald sends carries data: no id-only or empty events', { skip }, async () => {
  const t = topic('s17');
  // A resume (with a gap event) and live events: all of Herald's kinds of
  // frame.
  const rec = await stream(`/v1/events?topic=${t}`, { headers: { 'last-event-id': 'zzzzzzzz-1' } });
  try {
    await waitFor(() => rec.events.length === 1, 'the gap event');
    await publish(S, t, [struct({ a: 1 }), chat('x')]);
    await waitFor(() => rec.events.length === 3, 'three events');
    assert.deepEqual(rec.events.map((e) => e.event), ['herald.gap', 'google.protobuf.Struct', 'chat.v1.ChatMessage']);
    for (const e of rec.events) {
      assert.ok(e.data.length > 0, 'an empty event');
      JSON.parse(e.data);
    }
    // Block by block: any block with an id also has data.
    for (const block of rec.text.split('\n\n')) {
      if (/^id: /m.test(block)) assert.match(block, /^data: /m, `id-only block ${JSON.stringify(block)}`);
    }
    assert.deepEqual(rec.parseErrors, []);
  } finally {
    rec.close();
  }
});
