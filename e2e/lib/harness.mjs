// Shared helpers of the node tests. The Go side (e2e/*_test.go) starts the
// Herald servers and passes what the tests need in HERALD_E2E:
//   { control, chrome, servers: {name: {url, direct, retryMs, heartbeatMs, maxEventBytes}}, pages: {...} }
// and publishes over gRPC when a test asks it to through `control`.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';

export const cfg = process.env.HERALD_E2E ? JSON.parse(process.env.HERALD_E2E) : null;

// skip is the node:test option that skips a file's tests when it is run by
// hand without the Go harness.
export const skip = cfg ? false : 'run by `go test ./e2e/`, which starts the servers (HERALD_E2E is not set)';

// control calls the Go side: publish, outage, restart, near-limit, tap.
export async function control(path, body) {
  const res = await fetch(cfg.control + path, { method: 'POST', body: JSON.stringify(body) });
  const out = await res.json();
  if (!res.ok) throw new Error(`control ${path}: ${out.error}`);
  return out;
}

// publish publishes payloads (protojson Any objects) to topic on server,
// over gRPC, and returns their ids. A refused publish throws unless
// allowError, then it returns {error: {code, message}}.
export async function publish(server, topic, payloads, { type = '', stream = false, allowError = false } = {}) {
  const out = await control('/publish', { server, topic, type, payloads, stream });
  if (out.error && !allowError) throw new Error(`publish refused: ${out.error.code}: ${out.error.message}`);
  return allowError ? out : out.ids;
}

// tapStats returns what the TCP tap in front of server saw: connections
// accepted and open, and the HTTP/1.1 requests (method, target, lower-case
// headers), in order.
export const tapStats = (server) => control('/tap', { server });

// topic returns a fresh topic, so that tests never see each other's events.
export const topic = (name) => `e2e.${name}.${randomBytes(4).toString('hex')}`;

export const struct = (value) => ({ '@type': 'type.googleapis.com/google.protobuf.Struct', value });
export const chat = (text, room = 'lobby') => ({ '@type': 'type.googleapis.com/chat.v1.ChatMessage', room, text });

// An order, as published, and the JSON every client must receive for it:
// int64 as a string, enums by name, camelCase field names (protojson).
export const order = {
  '@type': 'type.googleapis.com/orders.v1.OrderPlaced',
  orderId: 'o-1', customer: 'Zoë 山田 👩‍💻', totalCents: '4200', currency: 'EUR', channel: 'CHANNEL_WEB',
};
export const orderJSON = {
  orderId: 'o-1', customer: 'Zoë 山田 👩‍💻', totalCents: '4200', currency: 'EUR', channel: 'CHANNEL_WEB',
};

// Text no SSE stream may mangle: every script, an emoji sequence, line
// breaks of every kind, and an attempt to inject SSE fields.
export const nasty = 'Zoë 山田 Ψυχή مرحبا 🎉👩‍👩‍👧 \u2028\u2029 tab\there\r\nCRLF\rCR\nLF ' +
  'data: injected\n\nevent: fake\nid: 999\nretry: 1\n\n: comment \u0000 \uFEFFbom';

// The sequence number of a Herald event id ("<epoch>-<seq>").
export function seq(id) {
  const m = /^([a-z0-9]+)-(\d+)$/.exec(id);
  assert.ok(m, `event id ${JSON.stringify(id)} is not <epoch>-<seq>`);
  return BigInt(m[2]);
}

// ids must be strictly increasing.
export function assertIncreasing(ids) {
  for (let i = 1; i < ids.length; i++) {
    assert.ok(seq(ids[i]) > seq(ids[i - 1]), `id ${ids[i]} after ${ids[i - 1]} does not increase`);
  }
}

// waitFor polls cond (sync or async) until it returns a truthy value,
// which it returns; it fails after timeout ms.
export async function waitFor(cond, what, timeout = 10000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// quiet passes ms of wall time: for checks that something does NOT happen
// (no reconnect), which no condition can wait for.
export const quiet = (ms) => new Promise((r) => setTimeout(r, ms));
