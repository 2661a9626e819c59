// The operator console (internal/console) in headless Chromium (Debian's
// chromium, driven by playwright-core) against a real Herald that checks
// tokens. Run by TestConsole in console_test.go, which passes an admin
// token (admin, and publish and subscribe on e2e.>) and a user's token
// (subscribe only). With screenshots set, each view is saved to
// docs/console/<view>.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { cfg, skip, topic } from './lib/harness.mjs';

const WAIT = 15000;
let ctx;
let profile;
let base;
let con; // the console's page
const pageErrors = [];
const t1 = topic('console');

before(async () => {
  if (skip) return;
  base = cfg.servers.console.direct;
  profile = await mkdtemp(join(tmpdir(), 'herald-console-'));
  ctx = await chromium.launchPersistentContext(profile, {
    executablePath: cfg.chrome,
    headless: true,
    viewport: { width: 1200, height: 800 },
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  con = await ctx.newPage();
  // The page's own errors: the last test checks there were none.
  con.on('pageerror', (e) => pageErrors.push(e.message));
  if (cfg.screenshots) await mkdir(new URL('../docs/console/', import.meta.url), { recursive: true });
}, { timeout: 60000 });

after(async () => {
  await ctx?.close();
  if (profile) await rm(profile, { recursive: true, force: true });
});

async function shot(page, name) {
  if (!cfg.screenshots) return;
  await page.screenshot({ path: new URL(`../docs/console/${name}.png`, import.meta.url).pathname, fullPage: true });
}

async function useToken(page, token) {
  await page.fill('#token', token);
  await page.click('#token-form button[type=submit]');
}

// The text of a topic's subscriber cell, or null while it is not listed.
const subscribers = (page, name) => page.evaluate((name) => {
  const cell = document.querySelector(`tr[data-topic="${CSS.escape(name)}"] td.subscribers`);
  return cell ? Number(cell.textContent) : null;
}, name);

async function waitSubscribers(page, name, n) {
  await page.waitForFunction(({ name, n }) => {
    const cell = document.querySelector(`tr[data-topic="${CSS.escape(name)}"] td.subscribers`);
    return cell && Number(cell.textContent) === n;
  }, { name, n }, { timeout: WAIT });
}

test('a token that is not admin is refused with a visible message', { skip }, async () => {
  await con.goto(`${base}/console#/topics`);
  // No token at all: 401, and the page says to paste one.
  await con.locator('#banner', { hasText: 'Paste an admin token' }).waitFor({ timeout: WAIT });
  await useToken(con, cfg.tokens.user);
  const banner = con.locator('#banner', { hasText: 'not admin' });
  await banner.waitFor({ timeout: WAIT });
  assert.match(await banner.textContent(), /Refused \(403\).*"admin": true/);
  assert.ok(await banner.isVisible());
  // Nothing was listed for it; the token stays out of the URL.
  assert.equal(await con.locator('tr[data-topic]').count(), 0);
  assert.ok(!con.url().includes(cfg.tokens.user));
  await shot(con, 'refused');
});

test("the topics table's subscriber count rises as EventSources open elsewhere and falls as they close", { skip }, async () => {
  await useToken(con, cfg.tokens.admin);
  await con.locator('#banner').waitFor({ state: 'hidden', timeout: WAIT });
  assert.equal(await con.evaluate(() => sessionStorage.getItem('herald.console.token')), cfg.tokens.admin);
  assert.equal(await subscribers(con, t1), null, 'a topic nobody watches is not listed');

  // Another page of the same browser: a user's EventSources.
  const other = await ctx.newPage();
  await other.goto(`${base}/healthz`);
  const open = (n) => other.evaluate(({ t, tok, n }) => {
    window.streams ??= [];
    const opened = [];
    for (let i = 0; i < n; i++) {
      const es = new EventSource(`/v1/events?topic=${encodeURIComponent(t)}&access_token=${tok}`);
      opened.push(new Promise((resolve) => { es.onopen = resolve; }));
      window.streams.push(es);
    }
    return Promise.all(opened).then(() => window.streams.length);
  }, { t: t1, tok: cfg.tokens.user, n });
  const close = (n) => other.evaluate((n) => {
    for (const es of window.streams.splice(0, n)) es.close();
    return window.streams.length;
  }, n);

  assert.equal(await open(1), 1);
  await waitSubscribers(con, t1, 1);
  assert.equal(await open(2), 3);
  await waitSubscribers(con, t1, 3);
  assert.equal(await close(2), 1);
  await waitSubscribers(con, t1, 1);
  assert.equal(await close(1), 0);
  await con.waitForFunction((name) => !document.querySelector(`tr[data-topic="${CSS.escape(name)}"]`), t1, { timeout: WAIT });
  await other.close();
});

test("the nodes view shows the node and its broker's health", { skip }, async () => {
  await con.goto(`${base}/console#/nodes`);
  const row = con.locator('tr[data-node="node-a"]');
  await row.waitFor({ timeout: WAIT });
  assert.match(await row.textContent(), /node-a \(this node\)/);
  assert.equal(await row.locator('td.broker').textContent(), 'healthy');
  await shot(con, 'nodes');
});

// publishFromForm publishes payload as type from the topic view's form and
// returns the id the console shows.
async function publishFromForm(page, type, payload) {
  await page.locator(`select.type option[value="${type}"]`).waitFor({ state: 'attached', timeout: WAIT });
  if (await page.inputValue('select.type') !== type) await page.selectOption('select.type', type);
  // Choosing a type fills in its example; then the payload is ours.
  await page.locator(`textarea.payload[data-example="${type}"]`).waitFor({ timeout: WAIT });
  await page.fill('textarea.payload', JSON.stringify(payload));
  const before = await page.locator('.published').textContent();
  await page.click('form.publish button[type=submit]');
  await page.waitForFunction((before) => {
    const ok = document.querySelector('.published');
    const err = document.querySelector('form.publish .error');
    return (!ok.hidden && ok.textContent !== before) || !err.hidden;
  }, before, { timeout: WAIT });
  const err = page.locator('form.publish .error');
  if (await err.isVisible()) throw new Error(`publish failed: ${await err.textContent()}`);
  return page.locator('.published .id').textContent();
}

test('an event published from the form appears in the live inspector with its id, and in the history', { skip }, async () => {
  await con.goto(`${base}/console#/topic/${encodeURIComponent(t1)}`);
  await con.locator('.stream-state', { hasText: /^live$/ }).waitFor({ timeout: WAIT });
  // The example the form starts from is the type's, from its JSON Schema.
  await con.locator('select.type option[value="orders.v1.OrderPlaced"]').waitFor({ state: 'attached', timeout: WAIT });
  await con.selectOption('select.type', 'orders.v1.OrderPlaced');
  await con.locator('textarea.payload[data-example="orders.v1.OrderPlaced"]').waitFor({ timeout: WAIT });
  assert.match(await con.inputValue('textarea.payload'), /"orderId": "text"/);

  const id = await publishFromForm(con, 'orders.v1.OrderPlaced', { orderId: 'o-1', customer: 'Grace', totalCents: '4200', currency: 'EUR' });
  assert.match(id, /^[a-z0-9]+-\d+$/);
  const item = con.locator(`ol.live li[data-id="${id}"]`);
  await item.waitFor({ timeout: WAIT });
  assert.equal(await item.locator('.id').textContent(), id);
  assert.equal(await item.locator('.type').textContent(), 'orders.v1.OrderPlaced');
  // Pretty JSON, as SSE data carried it (int64 as a string).
  assert.deepEqual(JSON.parse(await item.locator('pre').textContent()), { orderId: 'o-1', customer: 'Grace', totalCents: '4200', currency: 'EUR' });
  assert.match(await item.locator('pre').textContent(), /\n {2}"orderId": "o-1"/);

  // The history, from the broker: the same id.
  await con.click('.history button.newest');
  await con.locator(`ol.history li[data-id="${id}"]`).waitFor({ timeout: WAIT });
  await shot(con, 'topic');
});

test('the inspector pauses, filters by text and by a CEL expression', { skip }, async () => {
  // Paused: events are held back, and counted.
  await con.click('button.pause');
  const held = await publishFromForm(con, 'orders.v1.OrderPlaced', { orderId: 'o-2', customer: 'Alan' });
  await con.locator('button.pause', { hasText: 'Resume (1 new)' }).waitFor({ timeout: WAIT });
  assert.ok(await con.locator(`ol.live li[data-id="${held}"]`).isHidden());
  await con.click('button.pause');
  await con.locator(`ol.live li[data-id="${held}"]`).waitFor({ timeout: WAIT });

  // The text filter hides what does not contain the text.
  await con.fill('input.text-filter', 'alan');
  assert.equal(await con.locator('ol.live li:visible').count(), 1);
  await con.fill('input.text-filter', '');

  // The CEL filter goes to Herald as filter=: what it refuses never comes.
  await con.fill('input.cel-filter', 'payload.customer == "Ada"');
  await con.click('.inspector button[type=submit]');
  await con.locator('.stream-state', { hasText: 'live, filtered' }).waitFor({ timeout: WAIT });
  const bob = await publishFromForm(con, 'orders.v1.OrderPlaced', { orderId: 'o-3', customer: 'Bob' });
  const ada = await publishFromForm(con, 'orders.v1.OrderPlaced', { orderId: 'o-4', customer: 'Ada' });
  await con.locator(`ol.live li[data-id="${ada}"]`).waitFor({ timeout: WAIT });
  // Events arrive in order: Ada's came after Bob's, so Bob's was dropped.
  assert.equal(await con.locator(`ol.live li[data-id="${bob}"]`).count(), 0);
});

test('a payload Herald refuses shows its error inline under the form', { skip }, async () => {
  await con.fill('textarea.payload', JSON.stringify({ orderId: 'o-5', totalCents: 'lots' }));
  await con.click('form.publish button[type=submit]');
  const err = con.locator('form.publish .error');
  await err.waitFor({ timeout: WAIT });
  const text = await err.textContent();
  assert.match(text, /^Error 400: .*totalCents/, text);
  assert.ok(await con.locator('.published').isHidden());
  // Not JSON at all is caught before it is sent.
  await con.fill('textarea.payload', '{"orderId": ');
  await con.click('form.publish button[type=submit]');
  await con.locator('form.publish .error', { hasText: 'Not JSON' }).waitFor({ timeout: WAIT });
  await con.fill('textarea.payload', JSON.stringify({ orderId: 'o-5', totalCents: 'lots' }));
  await con.click('form.publish button[type=submit]');
  await con.locator('form.publish .error', { hasText: 'totalCents' }).waitFor({ timeout: WAIT });
  await shot(con, 'publish-error');
});

test('the history pages backwards and forwards through the retained events', { skip }, async () => {
  // Two more events: six retained (Grace, Alan, Bob, Ada, these).
  const more = [
    await publishFromForm(con, 'orders.v1.OrderPlaced', { orderId: 'o-6', customer: 'Ada' }),
    await publishFromForm(con, 'orders.v1.OrderPlaced', { orderId: 'o-7', customer: 'Ada' }),
  ];
  const shown = () => con.locator('ol.history li').evaluateAll((lis) => lis.map((li) => li.dataset.id));
  await con.selectOption('select.page-size', '5');
  // The newest page: the last five, oldest first, ending with the last.
  await con.waitForFunction((last) => {
    const ids = [...document.querySelectorAll('ol.history li')].map((li) => li.dataset.id);
    return ids.length === 5 && ids[4] === last;
  }, more[1], { timeout: WAIT });
  const newest = await shown();
  assert.ok(await con.locator('.history button.newer').isDisabled());
  await con.click('.history button.older');
  await con.waitForFunction((first) => document.querySelector('ol.history li')?.dataset.id !== first, newest[0], { timeout: WAIT });
  const older = await shown();
  assert.equal(older.length, 1, `one event is older than the newest five: ${older}`);
  assert.ok(await con.locator('.history button.older').isDisabled());
  assert.match(await con.locator('.history .note').textContent(), /1 shown of 6 retained/);
  await con.click('.history button.newer');
  await con.waitForFunction((n) => document.querySelectorAll('ol.history li').length === n, 5, { timeout: WAIT });
  assert.deepEqual(await shown(), newest);

  if (cfg.screenshots) {
    // The topics table with figures in every column, for docs/console.md.
    const other = await ctx.newPage();
    await other.goto(`${base}/healthz`);
    await other.evaluate(({ t, tok }) => {
      for (const topic of [t, t, t, 'e2e.console.orders.eu', 'e2e.console.>']) {
        new EventSource(`/v1/events?topic=${encodeURIComponent(topic)}&access_token=${tok}`);
      }
    }, { t: t1, tok: cfg.tokens.user });
    await con.goto(`${base}/console#/topics`);
    await waitSubscribers(con, t1, 3);
    await waitSubscribers(con, 'e2e.console.>', 1);
    await shot(con, 'topics');
    await other.close();
  }
});

test("the publish form's fields, generated from the type's JSON Schema, write its JSON", { skip }, async () => {
  // A form of its own: the page may be on this topic already, and going
  // to the same address again would keep the last test's form and payload.
  await con.goto(`${base}/console#/topics`);
  await con.goto(`${base}/console#/topic/${encodeURIComponent(t1)}`);
  await con.locator('select.type option[value="orders.v1.OrderPlaced"]').waitFor({ state: 'attached', timeout: WAIT });
  await con.selectOption('select.type', 'orders.v1.OrderPlaced');
  await con.locator('textarea.payload[data-example="orders.v1.OrderPlaced"]').waitFor({ timeout: WAIT });
  // A field per scalar: text, 64-bit integers as text, enums as choices.
  const names = await con.locator('.fields [name]').evaluateAll((els) => els.map((e) => `${e.name}:${e.tagName.toLowerCase()}`));
  assert.deepEqual(names.sort(), ['channel:select', 'currency:input', 'customer:input', 'orderId:input', 'placedAt:input', 'totalCents:input']);
  await con.fill('.fields input[name="customer"]', 'Form Filled');
  await con.fill('.fields input[name="totalCents"]', '990');
  await con.selectOption('.fields select[name="channel"]', 'CHANNEL_MOBILE');
  await con.fill('.fields input[name="orderId"]', '');
  const json = JSON.parse(await con.inputValue('textarea.payload'));
  assert.equal(json.customer, 'Form Filled');
  assert.equal(json.totalCents, '990');
  assert.equal(json.channel, 'CHANNEL_MOBILE');
  assert.ok(!('orderId' in json), 'an emptied field leaves the JSON');
  assert.ok(Array.isArray(json.items), 'the nested list stays in the JSON');
  // And the other way: the JSON edited shows in the fields.
  await con.fill('textarea.payload', JSON.stringify({ ...json, customer: 'Typed' }));
  assert.equal(await con.inputValue('.fields input[name="customer"]'), 'Typed');
  await shot(con, 'publish-form');

  // The page may still show an earlier publish's id: wait for a new one.
  const earlier = await con.locator('.published').textContent();
  await con.click('form.publish button[type=submit]');
  await con.waitForFunction((earlier) => {
    const ok = document.querySelector('.published');
    return !ok.hidden && ok.textContent !== earlier;
  }, earlier, { timeout: WAIT });
  const id = await con.locator('.published .id').textContent();
  await con.click('.history button.newest');
  const item = con.locator(`ol.history li[data-id="${id}"]`);
  await item.waitFor({ timeout: WAIT });
  const got = JSON.parse(await item.locator('pre').textContent());
  assert.equal(got.customer, 'Typed');
  assert.equal(got.channel, 'CHANNEL_MOBILE');
});

test("the schema browser shows a type's fields and an example payload", { skip }, async () => {
  await con.goto(`${base}/console#/schemas/orders.v1.OrderPlaced`);
  await con.locator('.detail h3', { hasText: 'orders.v1.OrderPlaced' }).waitFor({ timeout: WAIT });
  const fields = await con.locator('.detail tbody td.id').allTextContents();
  assert.deepEqual(fields.sort(), ['channel', 'currency', 'customer', 'items', 'orderId', 'placedAt', 'totalCents']);
  const example = JSON.parse(await con.locator('pre.example').textContent());
  assert.equal(typeof example.totalCents, 'string', 'int64 as a string');
  assert.ok(Array.isArray(example.items) && example.items[0].sku !== undefined);
  assert.ok(await con.locator('ul.types a', { hasText: 'chat.v1.ChatMessage' }).count() === 1);
  await shot(con, 'schemas');
});

test('a subject is revoked from the revocations view, and the revocation lifted', { skip }, async () => {
  await con.goto(`${base}/console#/revocations`);
  await con.locator('main .scroll').waitFor({ timeout: WAIT });
  // Herald's refusal shows inline: a subject is needed.
  await con.click('form.revoke button[type=submit]');
  const err = con.locator('main .error');
  await err.waitFor({ timeout: WAIT });
  assert.match(await err.textContent(), /^Error 400: .*subject/);

  await con.fill('input.subject', 'leaked-svc');
  await con.selectOption('select.until', String(24 * 3600));
  await con.click('form.revoke button[type=submit]');
  const row = con.locator('tr[data-subject="leaked-svc"]');
  await row.waitFor({ timeout: WAIT });
  assert.ok(await err.isHidden());
  // The API agrees: revoked for about a day.
  const listed = await con.evaluate(async (tok) => {
    const r = await fetch('/v1/revocations', { headers: { Authorization: `Bearer ${tok}` } });
    return (await r.json()).revocations;
  }, cfg.tokens.admin);
  const until = Date.parse(listed.find((r) => r.subject === 'leaked-svc').until);
  assert.ok(Math.abs(until - Date.now() - 24 * 3600e3) < 600e3, `until ${listed[0].until}`);
  await shot(con, 'revocations');
  await row.locator('button.lift').click();
  await row.waitFor({ state: 'detached', timeout: WAIT });
});

test('every view fits 390 px wide, in dark mode', { skip }, async () => {
  await con.setViewportSize({ width: 390, height: 844 });
  await con.emulateMedia({ colorScheme: 'dark' });
  const views = {
    topics: ['#/topics', 'Topics'], nodes: ['#/nodes', 'Nodes'], revocations: ['#/revocations', 'Revocations'],
    schemas: ['#/schemas/orders.v1.OrderPlaced', 'Schemas'], topic: [`#/topic/${encodeURIComponent(t1)}`, t1],
  };
  for (const [name, [hash, heading]] of Object.entries(views)) {
    await con.goto(`${base}/console${hash}`);
    await con.locator('main h2', { hasText: heading }).waitFor({ timeout: WAIT });
    await con.locator('main .scroll, main ol.events').first().waitFor({ timeout: WAIT });
    const { width, bg } = await con.evaluate(() => ({
      width: document.documentElement.scrollWidth,
      bg: getComputedStyle(document.body).backgroundColor,
    }));
    assert.ok(width <= 390, `${name}: the page is ${width} px wide at 390`);
    assert.equal(bg, 'rgb(15, 18, 22)', `${name}: not dark`);
    if (name === 'topic' || name === 'topics') await shot(con, `${name}-390-dark`);
  }
  assert.deepEqual(pageErrors, [], 'the page threw');
});
