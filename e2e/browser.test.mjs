// Headless Chromium (Debian's chromium, driven by playwright-core) running
// the plain EventSource API in real pages against real Herald servers. One
// browser launch serves every test. Run by TestBrowser in clients_test.go.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import {
  cfg, skip, publish, control, tapStats, topic, struct, chat, order, orderJSON, nasty,
  assertIncreasing, waitFor, quiet,
} from './lib/harness.mjs';

const CONNECTING = 0;
const OPEN = 1;
const CLOSED = 2;

let ctx;
let profile;

before(async () => {
  if (skip) return;
  profile = await mkdtemp(join(tmpdir(), 'herald-chromium-'));
  ctx = await chromium.launchPersistentContext(profile, {
    executablePath: cfg.chrome,
    headless: true,
    ignoreHTTPSErrors: true, // the TLS server's certificate is self-signed
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  await ctx.addInitScript(recorder);
  // A cookie for 127.0.0.1: sent on credentialed requests to any port.
  await ctx.addCookies([{ name: 'session', value: 'e2e-cookie', domain: '127.0.0.1', path: '/', sameSite: 'Lax' }]);
  // The subscriber's token, as a backend would set it: HttpOnly, so page
  // scripts never see it; the browser sends it with credentialed requests.
  await ctx.addCookies([{ name: cfg.auth.cookie, value: cfg.auth.token, domain: '127.0.0.1', path: '/', sameSite: 'Lax', httpOnly: true }]);
}, { timeout: 60000 });

after(async () => {
  await ctx?.close();
  if (profile) await rm(profile, { recursive: true, force: true });
});

// recorder runs in every page: window.__open(url, opts) creates an
// EventSource and records all it reports.
function recorder() {
  window.__es = [];
  window.__open = (url, { types = [], withCredentials = false } = {}) => {
    const es = new EventSource(url, { withCredentials });
    const rec = { es, events: [], messages: [], errors: [], opens: 0 };
    es.onopen = () => { rec.opens++; };
    es.onerror = () => { rec.errors.push(es.readyState); };
    es.onmessage = (e) => { rec.messages.push({ type: e.type, data: e.data, id: e.lastEventId }); };
    for (const t of types) {
      es.addEventListener(t, (e) => rec.events.push({ type: e.type, data: e.data, id: e.lastEventId, origin: e.origin }));
    }
    window.__es.push(rec);
    return window.__es.length - 1;
  };
  window.__state = (i) => {
    const r = window.__es[i];
    return { readyState: r.es.readyState, opens: r.opens, errors: r.errors, events: r.events.length, messages: r.messages.length };
  };
  window.__events = (i) => window.__es[i].events;
  window.__messages = (i) => window.__es[i].messages;
}

// A page at url, with a CDP session that records the responses to
// EventSource requests (status, protocol, headers) as the browser saw them.
async function page(url) {
  const p = await ctx.newPage();
  p.streams = [];
  const cdp = await ctx.newCDPSession(p);
  await cdp.send('Network.enable');
  cdp.on('Network.responseReceived', ({ type, response }) => {
    if (type === 'EventSource') {
      p.streams.push({ url: response.url, status: response.status, protocol: response.protocol, headers: lower(response.headers) });
    }
  });
  await p.goto(url);
  return p;
}

const lower = (h) => Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));
const open = (p, url, opts = {}) => p.evaluate(([u, o]) => window.__open(u, o), [url, opts]);
const state = (p, i) => p.evaluate((i) => window.__state(i), i);
const events = (p, i) => p.evaluate((i) => window.__events(i), i);
const messages = (p, i) => p.evaluate((i) => window.__messages(i), i);
const until = (p, i, pred, what, timeout) => waitFor(async () => pred(await state(p, i)), what, timeout);
const opened = (p, i) => until(p, i, (s) => s.readyState === OPEN && s.opens > 0, 'the EventSource to open');
const got = (p, i, n) => until(p, i, (s) => s.events >= n, `${n} events`, 20000);

const plain = () => cfg.servers.plain;

test('page: named events reach addEventListener(type); onmessage sees only type "message", or every event with envelope=true', { skip }, async () => {
  const t = topic('named');
  const p = await page(plain().url + '/healthz');
  try {
    const i = await open(p, `/v1/events?topic=${t}`, { types: ['orders.v1.OrderPlaced', 'custom-type', 'message'] });
    const j = await open(p, `/v1/events?topic=${t}&envelope=true`, { types: ['orders.v1.OrderPlaced', 'custom-type', 'message'] });
    await opened(p, i);
    await opened(p, j);
    const [a] = await publish('plain', t, [order]);
    const [b] = await publish('plain', t, [struct({ n: 1 })], { type: 'custom-type' });
    const [c] = await publish('plain', t, [struct({ n: 2 })], { type: 'message' });
    await got(p, i, 3);
    assert.deepEqual((await events(p, i)).map((e) => [e.type, e.id]), [['orders.v1.OrderPlaced', a], ['custom-type', b], ['message', c]]);
    assert.deepEqual((await messages(p, i)).map((e) => e.id), [c]);
    assert.deepEqual((await state(p, i)).errors, []);
    // The page that asked for envelopes gets all three in onmessage (its
    // "message" listener too, as onmessage is one), the type in the data.
    await until(p, j, (s) => s.messages >= 3, '3 messages', 20000);
    const env = await messages(p, j);
    assert.deepEqual(env.map((e) => [e.id, JSON.parse(e.data).type]), [[a, 'orders.v1.OrderPlaced'], [b, 'custom-type'], [c, 'message']]);
    assert.deepEqual(JSON.parse(env[0].data).payload, orderJSON);
  } finally {
    await p.close();
  }
});

test('page: JSON equals the published payload, non-ASCII and line breaks intact', { skip }, async () => {
  const t = topic('json');
  const p = await page(plain().url + '/healthz');
  try {
    const i = await open(p, `/v1/events?topic=${t}`, { types: ['orders.v1.OrderPlaced', 'google.protobuf.Struct', 'chat.v1.ChatMessage'] });
    await opened(p, i);
    const value = { text: nasty, n: -0.25, ok: false, nothing: null, list: ['ü', 2, { deep: '深い' }] };
    const ids = [
      ...(await publish('plain', t, [order])),
      ...(await publish('plain', t, [struct(value)])),
      ...(await publish('plain', t, [chat(nasty)])),
    ];
    await got(p, i, 3);
    const evs = await events(p, i);
    assert.deepEqual(evs.map((e) => e.id), ids);
    assert.deepEqual(JSON.parse(evs[0].data), orderJSON);
    assert.deepEqual(JSON.parse(evs[1].data), value);
    assert.deepEqual(JSON.parse(evs[2].data), { room: 'lobby', text: nasty });
    assert.equal(evs[0].origin, new URL(plain().url).origin);
  } finally {
    await p.close();
  }
});

test('page: onopen fires at once, before any event is published', { skip }, async () => {
  const p = await page(plain().url + '/healthz');
  try {
    const t0 = Date.now();
    const i = await open(p, `/v1/events?topic=${topic('open')}`);
    await until(p, i, (s) => s.opens === 1, 'onopen', 3000); // the heartbeat is 15 s away
    assert.ok(Date.now() - t0 < 3000);
    assert.equal((await state(p, i)).events, 0);
  } finally {
    await p.close();
  }
});

test('page: an event exactly at the size limit arrives whole', { skip }, async () => {
  const t = topic('big');
  const p = await page(plain().url + '/healthz');
  try {
    const i = await open(p, `/v1/events?topic=${t}`, { types: ['chat.v1.ChatMessage'] });
    await opened(p, i);
    const big = await control('/near-limit', { server: 'plain', topic: t, unit: 'ü山🎉' });
    await got(p, i, 1);
    const [ev] = await events(p, i);
    assert.equal(ev.id, big.id);
    assert.ok(JSON.parse(ev.data).text === big.text, 'the text arrived changed');
  } finally {
    await p.close();
  }
});

test('page: a burst of 500 events arrives complete and in order', { skip }, async () => {
  const t = topic('burst');
  const p = await page(plain().url + '/healthz');
  try {
    const i = await open(p, `/v1/events?topic=${t}`, { types: ['google.protobuf.Struct'] });
    await opened(p, i);
    const payloads = Array.from({ length: 500 }, (_, n) => struct({ n }));
    const ids = await publish('plain', t, payloads, { stream: true });
    await got(p, i, 500);
    await quiet(100);
    const evs = await events(p, i);
    assert.equal(evs.length, 500);
    assert.deepEqual(evs.map((e) => e.id), ids);
    assert.deepEqual(evs.map((e) => JSON.parse(e.data).n), payloads.map((x) => x.value.n));
    assertIncreasing(ids);
  } finally {
    await p.close();
  }
});

for (const how of ['outage', 'restart']) {
  const what = how === 'outage' ? 'the connection drops' : 'the server restarts';
  test(`page: after ${what} it reconnects with Last-Event-ID and gets every missed event exactly once`, { skip }, async () => {
    const t = topic(how);
    const p = await page(plain().url + '/healthz');
    try {
      const i = await open(p, `/v1/events?topic=${t}`, { types: ['google.protobuf.Struct'] });
      await opened(p, i);
      const before = await publish('plain', t, [struct({ n: 0 }), struct({ n: 1 })]);
      await got(p, i, 2);
      const { ids: missed } = await control(`/${how}`, { server: 'plain', topic: t, payloads: [2, 3, 4, 5, 6].map((n) => struct({ n })) });
      await until(p, i, (s) => s.opens >= 2 && s.readyState === OPEN, 'the EventSource to reconnect', 15000);
      const after = await publish('plain', t, [struct({ n: 7 })]);
      await got(p, i, 8);
      await quiet(100);
      const evs = await events(p, i);
      assert.deepEqual(evs.map((e) => e.id), [...before, ...missed, ...after], 'every event exactly once, in order');
      const s = await state(p, i);
      assert.ok(s.errors.length >= 1 && s.errors.every((st) => st === CONNECTING), `error states ${s.errors}`);
      // What the browser sent on the wire when it reconnected.
      const reqs = (await tapStats('plain')).requests.filter((r) => r.target === `/v1/events?topic=${t}`);
      assert.ok(reqs.length >= 2, `requests: ${JSON.stringify(reqs)}`);
      assert.equal(reqs[0].header['last-event-id'], undefined);
      assert.equal(reqs[1].header['last-event-id'], before[1]);
    } finally {
      await p.close();
    }
  });
}

test('page: a refused subscription (404, 400) leaves the EventSource CLOSED, never retrying', { skip }, async () => {
  const p = await page(plain().url + '/healthz');
  try {
    const paths = ['/v1/nothing?topic=browser', '/v1/events?browser=1', '/v1/events?topic=browser..x'];
    const idx = [];
    for (const path of paths) idx.push(await open(p, path, { types: ['message'] }));
    for (const i of idx) await until(p, i, (s) => s.readyState === CLOSED, 'CLOSED');
    await quiet(5 * plain().retryMs);
    for (const i of idx) {
      const s = await state(p, i);
      assert.deepEqual(s.errors, [CLOSED]);
      assert.equal(s.opens, 0);
    }
    assert.deepEqual(p.streams.map((r) => r.status).sort(), [400, 400, 404]);
    const reqs = (await tapStats('plain')).requests.filter((r) => paths.includes(r.target));
    assert.equal(reqs.length, paths.length, `one request each: ${JSON.stringify(reqs.map((r) => r.target))}`);
  } finally {
    await p.close();
  }
});

test('page: stream headers as the browser gets them: no-cache, not buffered, not compressed', { skip }, async () => {
  const t = topic('headers');
  const p = await page(plain().url + '/healthz');
  try {
    const i = await open(p, `/v1/events?topic=${t}`, { types: ['google.protobuf.Struct'] });
    await opened(p, i);
    await waitFor(() => p.streams.length === 1, 'the response');
    const [r] = p.streams;
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'text/event-stream');
    assert.equal(r.headers['cache-control'], 'no-cache');
    assert.equal(r.headers['x-accel-buffering'], 'no');
    assert.equal(r.headers['content-length'], undefined);
    assert.equal(r.headers['content-encoding'], undefined);
    // …although the browser said it takes compressed responses.
    const [req] = (await tapStats('plain')).requests.filter((x) => x.target === `/v1/events?topic=${t}`);
    assert.match(req.header['accept-encoding'], /gzip/);
    assert.equal(req.header.accept, 'text/event-stream');
  } finally {
    await p.close();
  }
});

test('page: 10 EventSources at once over HTTP/2 (TLS) share one connection', { skip }, async () => {
  const tls = cfg.servers.tls;
  const p = await page(tls.url + '/healthz');
  try {
    // Loading the page may take a few TLS connections (the self-signed
    // certificate is refused, then accepted); what counts is that the 10
    // streams need no new one.
    const { accepted: before } = await tapStats('tls');
    const topics = Array.from({ length: 10 }, (_, n) => topic(`h2-${n}`));
    const idx = [];
    for (const t of topics) idx.push(await open(p, `/v1/events?topic=${t}`, { types: ['google.protobuf.Struct'] }));
    for (const i of idx) await opened(p, i);
    const ids = [];
    for (const [n, t] of topics.entries()) ids.push(...(await publish('tls', t, [struct({ n })])));
    for (const [n, i] of idx.entries()) {
      await got(p, i, 1);
      const [ev] = await events(p, i);
      assert.equal(ev.id, ids[n]);
      assert.deepEqual(JSON.parse(ev.data), { n });
    }
    assert.equal(p.streams.length, 10);
    for (const r of p.streams) assert.equal(r.protocol, 'h2', `${r.url} over ${r.protocol}`);
    const { accepted, open: conns } = await tapStats('tls');
    assert.equal(accepted, before, 'new TCP connections for the EventSources');
    assert.equal(conns, 1, 'open TCP connections to the TLS server');
  } finally {
    await p.close();
  }
});

test('page: over HTTP/1.1 only 6 of 10 EventSources open (why HTTP/2 matters)', { skip }, async () => {
  const h1 = cfg.servers.h1;
  const p = await page(h1.url + '/healthz');
  try {
    const idx = [];
    for (let n = 0; n < 10; n++) idx.push(await open(p, `/v1/events?topic=${topic(`h1-${n}`)}`));
    await waitFor(async () => (await Promise.all(idx.map((i) => state(p, i)))).filter((s) => s.opens > 0).length >= 6, 'six to open');
    await quiet(1000);
    const states = await Promise.all(idx.map((i) => state(p, i)));
    assert.equal(states.filter((s) => s.opens > 0).length, 6, 'open EventSources');
    assert.equal(states.filter((s) => s.readyState === CONNECTING).length, 4, 'stalled EventSources');
    for (const r of p.streams) assert.equal(r.protocol, 'http/1.1');
    const { open: conns } = await tapStats('h1');
    assert.equal(conns, 6, 'TCP connections');
  } finally {
    await p.close();
  }
});

test('page on a listed origin subscribes with credentials; reconnects need no preflight', { skip }, async () => {
  const cors = cfg.servers.cors;
  const t = topic('cors');
  const p = await page(cfg.pages.listed + '/');
  try {
    const url = `${cors.url}/v1/events?topic=${t}`;
    const i = await open(p, url, { types: ['google.protobuf.Struct'], withCredentials: true });
    const j = await open(p, `${url}&topic=${t}.x`, { types: ['google.protobuf.Struct'] });
    await opened(p, i);
    await opened(p, j);
    const before = await publish('cors', t, [struct({ n: 0 })]);
    await got(p, i, 1);
    await got(p, j, 1);
    const [ev] = await events(p, i);
    assert.equal(ev.id, before[0]);
    assert.equal(ev.origin, new URL(cors.url).origin);
    // Reconnect across origins with Last-Event-ID.
    const { ids: missed } = await control('/outage', { server: 'cors', topic: t, payloads: [struct({ n: 1 })] });
    await until(p, i, (s) => s.events >= 2, 'the missed event after the reconnect', 15000);
    assert.deepEqual((await events(p, i)).map((e) => e.id), [...before, ...missed]);

    const reqs = (await tapStats('cors')).requests;
    const mine = reqs.filter((r) => r.target === `/v1/events?topic=${t}`);
    assert.ok(mine.length >= 2, JSON.stringify(mine));
    for (const r of mine) {
      assert.equal(r.method, 'GET');
      assert.equal(r.header.origin, cfg.pages.listed);
      assert.ok(r.header.cookie?.split('; ').includes('session=e2e-cookie'), 'withCredentials sends cookies');
    }
    assert.equal(mine[1].header['last-event-id'], before[0]);
    const other = reqs.find((r) => r.target === `/v1/events?topic=${t}&topic=${t}.x`);
    assert.equal(other.header.cookie, undefined, 'without withCredentials no cookie');
    // Short CORS-safe ids keep Last-Event-ID a safelisted header: no
    // OPTIONS preflight before a reconnect.
    assert.deepEqual(reqs.filter((r) => r.method === 'OPTIONS'), []);
  } finally {
    await p.close();
  }
});

test('page on an unlisted origin is blocked', { skip }, async () => {
  const cors = cfg.servers.cors;
  const t = topic('blocked');
  const p = await page(cfg.pages.unlisted + '/');
  try {
    const i = await open(p, `${cors.url}/v1/events?topic=${t}`, { types: ['google.protobuf.Struct'], withCredentials: true });
    const j = await open(p, `${cors.url}/v1/events?topic=${t}&topic=${t}.x`, { types: ['google.protobuf.Struct'] });
    for (const k of [i, j]) await until(p, k, (s) => s.readyState === CLOSED, 'CLOSED');
    await publish('cors', t, [struct({ secret: true })]);
    await quiet(5 * cors.retryMs);
    for (const k of [i, j]) {
      const s = await state(p, k);
      assert.equal(s.opens, 0);
      assert.equal(s.events, 0);
      assert.deepEqual(s.errors, [CLOSED]);
    }
  } finally {
    await p.close();
  }
});

test('with CORS origin "*" a page subscribes without credentials; withCredentials is blocked', { skip }, async () => {
  const any = cfg.servers.corsAny;
  const t = topic('any');
  const p = await page(cfg.pages.unlisted + '/');
  try {
    const i = await open(p, `${any.url}/v1/events?topic=${t}`, { types: ['google.protobuf.Struct'] });
    const j = await open(p, `${any.url}/v1/events?topic=${t}&topic=${t}.x`, { types: ['google.protobuf.Struct'], withCredentials: true });
    await opened(p, i);
    await until(p, j, (s) => s.readyState === CLOSED, 'the credentialed one CLOSED');
    const [id] = await publish('corsAny', t, [struct({ n: 1 })]);
    await got(p, i, 1);
    assert.equal((await events(p, i))[0].id, id);
    assert.equal((await state(p, j)).events, 0);
  } finally {
    await p.close();
  }
});

test('page: the typed wrapper of docs/clients.md, as written there', { skip }, async () => {
  // The first js block after "### A small typed wrapper".
  const doc = await readFile(new URL('../docs/clients.md', import.meta.url), 'utf8');
  const section = doc.slice(doc.indexOf('### A small typed wrapper'));
  const code = /```js\n([\s\S]*?)```/.exec(section)[1].replace(/^export /m, '');
  const t = topic('wrapper');
  const [old] = await publish('plain', t, [order]);
  const p = await page(plain().url + '/healthz');
  try {
    await p.evaluate(([code, url]) => {
      window.__wrapped = { orders: [], gaps: [], states: [] };
      const subscribe = new Function(`${code}; return subscribe;`)();
      window.__stop = subscribe(url, {
        'orders.v1.OrderPlaced': (order, id) => window.__wrapped.orders.push({ order, id }),
      }, {
        onGap: (info) => window.__wrapped.gaps.push(info),
        onState: (s) => window.__wrapped.states.push(s),
      });
    }, [code, `/v1/events?topic=${t}&last_event_id=not-an-id`]);
    const w = () => p.evaluate(() => window.__wrapped);
    await waitFor(async () => (await w()).orders.length === 1, 'the retained order');
    const [id] = await publish('plain', t, [order]);
    await waitFor(async () => (await w()).orders.length === 2, 'the live order');
    const got = await w();
    assert.deepEqual(got.orders, [{ order: orderJSON, id: old }, { order: orderJSON, id }]);
    assert.equal(got.gaps.length, 1);
    assert.equal(got.gaps[0].lastEventId, 'not-an-id');
    assert.deepEqual(got.states, ['open']);
    await p.evaluate(() => window.__stop());
  } finally {
    await p.close();
  }
});

test('page on a listed origin subscribes with a token cookie and withCredentials; without them it is refused', { skip }, async () => {
  const srv = cfg.servers.auth;
  const ok = topic('auth-ok');
  const forbidden = topic('auth-no');
  const p = await page(cfg.pages.listed + '/');
  try {
    const i = await open(p, `${srv.url}/v1/events?topic=${ok}`, { types: ['google.protobuf.Struct'], withCredentials: true });
    const noCookie = await open(p, `${srv.url}/v1/events?topic=${ok}`, { types: ['google.protobuf.Struct'] });
    const notAllowed = await open(p, `${srv.url}/v1/events?topic=${forbidden}`, { types: ['google.protobuf.Struct'], withCredentials: true });
    await opened(p, i);
    for (const k of [noCookie, notAllowed]) await until(p, k, (s) => s.readyState === CLOSED, 'CLOSED');
    const ids = await publish('auth', ok, [struct({ secret: 'for the token holder' })]);
    await publish('auth', forbidden, [struct({ secret: 'for nobody' })]);
    await got(p, i, 1);
    const [ev] = await events(p, i);
    assert.equal(ev.id, ids[0]);
    assert.deepEqual(JSON.parse(ev.data), { secret: 'for the token holder' });
    for (const k of [noCookie, notAllowed]) {
      const s = await state(p, k);
      assert.equal(s.opens, 0, 'a refused EventSource never opens');
      assert.equal(s.events, 0, 'and receives nothing');
    }
    const reqs = (await tapStats('auth')).requests.filter((r) => r.method === 'GET');
    const sent = reqs.find((r) => r.target === `/v1/events?topic=${ok}` && r.header.cookie?.includes(cfg.auth.cookie));
    assert.ok(sent, 'the token cookie went with the credentialed request');
    const bare = reqs.filter((r) => r.target === `/v1/events?topic=${ok}` && !r.header.cookie);
    assert.equal(bare.length, 1, 'the request without credentials carried no cookie, and was not retried');
  } finally {
    await p.close();
  }
});

test('the demo page (internal/web): says which patterns it opens, prints commands for its own server, and says why a server refuses it', { skip }, async () => {
  const demo = cfg.servers.demo; // open, two streams at a time
  const secured = cfg.servers.secured; // tokens, also as ?access_token=
  const text = (p, sel) => p.$eval(sel, (e) => e.textContent);
  const status = (p, want) => waitFor(async () => (await text(p, '#statusText')) === want, `the page to say "${want}"`);
  const patterns = (s) => [...new Set(s.match(/\b[a-z][a-z0-9-]*(?:\.[a-z0-9-]+)*\.(?:>|\*)/g))].sort();
  const why = async (p, status) => {
    await waitFor(() => p.$eval('#why', (e) => !e.hidden), `the reason for ${status}`);
    return text(p, '#why');
  };

  const p = await page(demo.url + '/');
  const curl = new AbortController();
  try {
    await status(p, 'live');
    // What the page says it subscribes to is what it asked for.
    await waitFor(() => p.streams.length === 1, 'the stream');
    const opened = new URL(p.streams[0].url).searchParams.getAll('topic').sort();
    assert.deepEqual(opened, ['chat.>', 'monitoring.>', 'orders.>']);
    assert.deepEqual(patterns(await text(p, 'section[aria-labelledby="h-how"]')), opened, 'the patterns "How this works" names');
    // It shows what arrives.
    const [id] = await publish('demo', `orders.${topic('demo')}`, [order]);
    await waitFor(async () => (await text(p, '#orders')).includes(orderJSON.customer), 'the order on the page');
    assert.equal(await text(p, '#lastId'), id);
    // Its commands name the server it came from, and the curl one streams
    // as printed.
    const terminal = await text(p, 'section[aria-labelledby="h-curl"] pre');
    assert.ok(terminal.includes(`curl -N '${demo.url}/v1/events?topic=`), terminal);
    assert.ok(terminal.includes(`herald tail --url ${demo.url} `), terminal);
    assert.doesNotMatch(terminal, /localhost:8080/);
    const res = await fetch(/curl -N '([^']+)'/.exec(terminal)[1], { signal: curl.signal });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/event-stream');

    // The server takes two streams, the page's and curl's: another page
    // meets the limit.
    const q = await page(demo.url + '/');
    try {
      await status(q, 'not connected');
      const said = await why(q, 429);
      assert.match(said, /limit \(429\)/);
      assert.match(said, /concurrent streams are in use/, 'the server\'s own words');
    } finally {
      await q.close();
    }
  } finally {
    curl.abort();
    await p.close();
  }

  // On a server that checks tokens. The browser's token cookie is for
  // 127.0.0.1, so the page at localhost comes without one.
  const origin = secured.url.replace('127.0.0.1', 'localhost');
  const bare = await page(origin + '/');
  try {
    await status(bare, 'not connected');
    const said = await why(bare, 401);
    assert.match(said, /needs a token to subscribe to these topics \(401\)/);
    assert.match(said, /is not public/, 'the server\'s own words');
    const how = await text(bare, '#whyHow');
    assert.match(how, /herald token --key secret --subscribe 'orders\.>' --subscribe 'monitoring\.>' --subscribe 'chat\.>' --ttl 1h/);
    assert.ok((await text(bare, 'section[aria-labelledby="h-curl"] pre')).includes(`curl -N '${origin}/v1/events?topic=`));
    // Both ways the page tells work as printed: the URL with the token…
    const withToken = how.split('\n').find((l) => l.includes('?access_token=')).replace('TOKEN', cfg.auth.pageToken);
    const viaQuery = await page(withToken);
    try {
      await status(viaQuery, 'live');
      assert.equal(new URL(viaQuery.streams[0].url).searchParams.get('access_token'), cfg.auth.pageToken);
    } finally {
      await viaQuery.close();
    }
    // …and the cookie, set in the console, then Reconnect.
    const cookie = how.split('\n').find((l) => l.startsWith('document.cookie')).replace('TOKEN', cfg.auth.pageToken);
    await bare.evaluate(cookie);
    await bare.click('#retry');
    await status(bare, 'live');
    assert.ok(await bare.$eval('#why', (e) => e.hidden), 'the reason is gone once connected');
  } finally {
    await bare.close();
    await ctx.clearCookies({ domain: 'localhost' });
  }
  // A token that does not allow the page's topics (the cookie for 127.0.0.1).
  const denied = await page(secured.url + '/');
  try {
    await status(denied, 'not connected');
    const said = await why(denied, 403);
    assert.match(said, /the token does not allow these topics \(403\)/);
    assert.match(said, /do not allow subscribing to/);
  } finally {
    await denied.close();
  }
});

test('the demo page starts with every game server (snapshot=true), drops one that shuts down, and reloads to the same table', { skip }, async () => {
  const demo = cfg.servers.demo;
  const region = topic('snap').replaceAll('.', '-');
  const names = ['a', 'b', 'c'].map((x) => `game-${region}-${x}`);
  for (const [i, name] of names.entries()) {
    await publish('demo', `monitoring.${region}.${name}`, [{
      '@type': 'type.googleapis.com/monitoring.v1.ServerStats', serverId: name, region, onlinePlayers: 10 + i, maxPlayers: 64,
    }]);
  }
  const rows = (p) => p.$$eval('#servers tr', (trs) => trs.map((tr) => tr.querySelector('.mono')?.textContent));
  const mine = async (p) => (await rows(p)).filter((n) => n && n.includes(region)).sort();
  // The server takes two streams at a time: the last test's, once their
  // clients have gone, must have let go of theirs, and the page's first
  // stream of its own before a reload opens the next.
  const streams = async () => Number(/^herald_subscribers (\d+)$/m.exec(await (await fetch(`${demo.url}/metrics`)).text())[1]);
  const atMost = (n, what) => waitFor(async () => (await streams()) <= n, what);
  await atMost(0, 'the last test\'s streams to end');
  const p = await page(demo.url + '/');
  try {
    // Published before the page opened, there on load: the snapshot.
    await waitFor(async () => (await mine(p)).length === 3, 'the three servers on load');
    assert.deepEqual(await mine(p), names);
    // One shuts down: its state is deleted, and its row goes.
    const res = await fetch(`${demo.url}/v1/topics/monitoring.${region}.${names[1]}/state`, { method: 'DELETE' });
    assert.equal(res.status, 200);
    await waitFor(async () => (await mine(p)).length === 2, 'the deleted server to leave the table');
    assert.deepEqual(await mine(p), [names[0], names[2]]);
    // A reload shows the same picture.
    await atMost(1, 'no stream but the page\'s');
    await p.reload();
    await waitFor(async () => (await mine(p)).length === 2, 'the table after a reload');
    assert.deepEqual(await mine(p), [names[0], names[2]]);
  } finally {
    await p.close();
  }
});
