// Herald's operator console: topics, a topic's live inspector, history and
// publish form, the schema browser, the nodes and the revocations, over the
// admin API (docs/admin.md, docs/console.md). Views are chosen by the URL's
// fragment (#/topics, #/topic/NAME, #/schemas, #/schemas/NAME, #/nodes,
// #/revocations); the token lives in sessionStorage only.

import {
  APIError, getSchema, listEvents, listNodes, listRevocations, listSchemas, listTopics, publish, revoke, setToken, token,
  type JSONSchema, type NodeInfo, type Revocation, type SchemaInfo, type TopicEvent, type TopicInfo,
} from './api';
import { openStream } from './stream';

const POLL_MS = 2000;
const MAX_LIVE = 200;
const HISTORY_PAGE = 20;

type Child = Node | string | null | undefined | false;

/** Builds an element: h('td', {class: 'num'}, '3'). */
function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string | boolean | ((e: Event) => void)> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (typeof v === 'function') el.addEventListener(k.replace(/^on/, ''), v);
    else if (v === true) el.setAttribute(k, '');
    else if (v !== false) el.setAttribute(k, v);
  }
  for (const c of children) {
    if (c !== null && c !== undefined && c !== false) el.append(c);
  }
  return el;
}

const main = document.getElementById('main') as HTMLElement;
const banner = document.getElementById('banner') as HTMLElement;

/** Shows (or, given '', hides) the message at the top of every view. */
function say(msg: string, kind: 'error' | 'info' = 'error'): void {
  banner.textContent = msg;
  banner.className = msg ? `banner ${kind}` : 'banner';
  banner.hidden = !msg;
}

/** What a refusal tells the operator to do. */
function explain(e: unknown): string {
  if (e instanceof APIError) {
    if (e.status === 401) return `Refused (401): ${e.message}. Paste an admin token above.`;
    if (e.status === 403) return `Refused (403): ${e.message}.`;
    return e.status ? `Error ${e.status}: ${e.message}` : e.message;
  }
  return String(e);
}

// Whatever the current view runs (timers, streams) stops when it changes.
let stops: Array<() => void> = [];
function onLeave(f: () => void): void {
  stops.push(f);
}

/** Calls f now and every POLL_MS while the view lasts. */
function poll(f: () => Promise<void>): void {
  let timer = 0;
  let live = true;
  const run = async () => {
    await f();
    if (live) timer = window.setTimeout(run, POLL_MS);
  };
  void run();
  onLeave(() => {
    live = false;
    clearTimeout(timer);
  });
}

function ago(iso?: string): string {
  if (!iso) return '';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}

function duration(s = 0): string {
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${hh}h` : hh ? `${hh}h ${m}m` : `${m}m ${s % 60}s`;
}

const pretty = (v: unknown) => JSON.stringify(v, null, 2);

/** A table in a scroller; the columns numbered in num are right-aligned. */
function table(head: string[], rows: HTMLTableRowElement[], empty: string, num: number[] = []): HTMLElement {
  return h('div', { class: 'scroll' },
    h('table', {},
      h('thead', {}, h('tr', {}, ...head.map((c, i) => h('th', { scope: 'col', class: num.includes(i) ? 'num' : '' }, c)))),
      h('tbody', {}, ...(rows.length ? rows : [h('tr', {}, h('td', { colspan: String(head.length), class: 'empty' }, empty))]))));
}

// ---- the token -----------------------------------------------------------

function tokenForm(): void {
  const form = document.getElementById('token-form') as HTMLFormElement;
  const input = document.getElementById('token') as HTMLInputElement;
  const state = document.getElementById('token-state') as HTMLElement;
  const show = () => {
    state.textContent = token() ? 'token set (this tab only)' : 'no token';
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    setToken(input.value.trim());
    input.value = '';
    show();
    say('');
    route();
  });
  (document.getElementById('forget') as HTMLButtonElement).addEventListener('click', () => {
    setToken('');
    input.value = '';
    show();
    route();
  });
  show();
}

// ---- topics --------------------------------------------------------------

function topicsView(): void {
  const pattern = h('input', { type: 'search', placeholder: 'pattern, e.g. orders.>', 'aria-label': 'pattern', id: 'pattern' });
  const note = h('p', { class: 'note' });
  const body = h('div', {});
  main.replaceChildren(h('h2', {}, 'Topics'), h('div', { class: 'bar' }, pattern), body, note);
  poll(async () => {
    try {
      const r = await listTopics(pattern.value.trim());
      say('');
      const rows = (r.topics ?? []).map((t: TopicInfo) => h('tr', { 'data-topic': t.topic },
        h('td', {}, t.pattern ? h('span', { title: 'a pattern subscribed to' }, t.topic, ' ', h('em', {}, '(pattern)'))
          : h('a', { href: `#/topic/${encodeURIComponent(t.topic)}` }, t.topic)),
        h('td', { class: 'num subscribers', title: Object.entries(t.subscribersByNode ?? {}).map(([n, c]) => `${n}: ${c}`).join(', ') }, String(t.subscribers ?? 0)),
        h('td', { class: 'num' }, ((t.publishRate ?? 0) * 60).toFixed(1)),
        h('td', { class: 'id' }, t.lastEventId ?? ''),
        h('td', {}, ago(t.lastEventTime)),
        h('td', { class: 'num' }, t.pattern ? '' : String(t.retained ?? 0))));
      body.replaceChildren(table(['topic', 'subscribers', 'events/min', 'last event', 'when', 'retained'], rows,
        'No active topics: a topic is listed while it has subscribers or had events in the last minute.', [1, 2, 5]));
      note.textContent = `${r.nodes ?? 0} node(s) reporting${r.more ? '; more topics match than shown' : ''}. Updated every ${POLL_MS / 1000} s.`;
    } catch (e) {
      say(explain(e));
    }
  });
}

// ---- nodes ---------------------------------------------------------------

function nodesView(): void {
  const body = h('div', {});
  main.replaceChildren(h('h2', {}, 'Nodes'), body);
  poll(async () => {
    try {
      const r = await listNodes();
      say('');
      const rows = (r.nodes ?? []).map((n: NodeInfo) => h('tr', { 'data-node': n.name },
        h('td', {}, n.name, n.self ? h('em', {}, ' (this node)') : ''),
        h('td', {}, n.version ?? ''),
        h('td', {}, duration(n.uptimeSeconds)),
        h('td', { class: 'num' }, String(n.connections ?? 0)),
        h('td', { class: n.brokerHealthy ? 'ok broker' : 'bad broker' }, n.brokerHealthy ? 'healthy' : `unhealthy: ${n.brokerError ?? 'no report'}`),
        h('td', {}, ago(n.reported))));
      body.replaceChildren(table(['node', 'version', 'uptime', 'streams', 'broker', 'reported'], rows, 'No node reports.', [3]));
    } catch (e) {
      say(explain(e));
    }
  });
}

// ---- revocations ---------------------------------------------------------

const REVOKE_FOR: Array<[string, number]> = [['1 hour', 3600], ['24 hours', 86400], ['7 days', 7 * 86400], ['30 days', 30 * 86400], ['1 year', 365 * 86400]];

function revocationsView(): void {
  const subject = h('input', { type: 'text', placeholder: 'token subject (sub), e.g. billing-service', 'aria-label': 'subject', class: 'subject' });
  const span = h('select', { 'aria-label': 'for how long', class: 'until' },
    ...REVOKE_FOR.map(([label, s]) => h('option', { value: String(s), selected: s === 86400 }, `for ${label}`)));
  const err = h('p', { class: 'error', role: 'alert', hidden: true });
  const body = h('div', {});
  const refresh = async () => {
    try {
      const r = await listRevocations();
      say('');
      const rows = (r.revocations ?? []).map((v: Revocation) => h('tr', { 'data-subject': v.subject },
        h('td', { class: 'id' }, v.subject),
        h('td', {}, new Date(v.until).toLocaleString()),
        h('td', {}, h('button', { type: 'button', class: 'lift', onclick: () => void lift(v.subject) }, 'Lift'))));
      body.replaceChildren(table(['subject', 'refused until', ''], rows, 'No revocations in force.'));
    } catch (e) {
      say(explain(e));
    }
  };
  const lift = async (sub: string) => {
    try {
      // A time in the past lifts a revocation.
      await revoke(sub, new Date(Date.now() - 1000));
    } catch (e) {
      say(explain(e));
    }
    await refresh();
  };
  const form = h('form', { class: 'bar revoke' }, subject, span, h('button', { type: 'submit' }, 'Revoke'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.hidden = true;
    try {
      await revoke(subject.value.trim(), new Date(Date.now() + Number(span.value) * 1000));
      subject.value = '';
    } catch (x) {
      err.textContent = explain(x);
      err.hidden = false;
    }
    await refresh();
  });
  main.replaceChildren(h('h2', {}, 'Revocations'),
    h('p', { class: 'note' }, 'Revoking a subject ends every stream of its tokens on every node within seconds, and refuses its tokens (publish, subscribe, admin) until the time given.'),
    form, err, body);
  poll(refresh);
}

// ---- schemas -------------------------------------------------------------

let schemaCache: SchemaInfo[] | undefined;
async function schemas(): Promise<SchemaInfo[]> {
  schemaCache ??= (await listSchemas()).schemas ?? [];
  return schemaCache;
}

/** Follows a local $ref ("#/$defs/x") within root. */
function deref(s: JSONSchema, root: JSONSchema): JSONSchema {
  const m = s.$ref && /^#\/\$defs\/(.+)$/.exec(s.$ref);
  return m ? (root.$defs?.[m[1]] ?? {}) : s;
}

/** An example value of schema s: what the publish form starts with. */
function example(s: JSONSchema, root: JSONSchema, depth = 0): unknown {
  s = deref(s, root);
  if (s.enum?.length) return s.enum.find((v) => !String(v).endsWith('_UNSPECIFIED')) ?? s.enum[0];
  const alt = s.oneOf?.[0] ?? s.anyOf?.[0];
  if (alt) return example(alt, root, depth);
  const type = Array.isArray(s.type) ? s.type.find((t) => t !== 'null') : s.type;
  switch (type) {
    case 'object': {
      const out: Record<string, unknown> = {};
      if (depth < 4) {
        for (const [k, p] of Object.entries(s.properties ?? {})) out[k] = example(p, root, depth + 1);
      }
      return out;
    }
    case 'array':
      return depth < 4 && s.items ? [example(s.items, root, depth + 1)] : [];
    case 'integer':
    case 'number':
      return 1;
    case 'boolean':
      return true;
    case 'string':
      if (s.format === 'date-time') return new Date().toISOString();
      if (s.pattern === '^-?[0-9]+$') return '1';
      if (s.format === 'byte') return '';
      return 'text';
    default:
      return null;
  }
}

function typeOf(s: JSONSchema, root: JSONSchema): string {
  if (s.$ref) return s.$ref.replace('#/$defs/', '');
  if (s.enum) return `enum: ${s.enum.join(' | ')}`;
  const t = Array.isArray(s.type) ? s.type.join(' | ') : (s.type ?? 'any');
  if (t === 'array' && s.items) return `array of ${typeOf(s.items, root)}`;
  return s.format ? `${t} (${s.format})` : t;
}

function schemasView(name: string): void {
  const filter = h('input', { type: 'search', placeholder: 'filter types', 'aria-label': 'filter types' });
  const list = h('ul', { class: 'types' });
  const detail = h('div', { class: 'detail' });
  main.replaceChildren(h('h2', {}, 'Schemas'), h('div', { class: 'split' }, h('div', {}, filter, list), detail));
  const render = (all: SchemaInfo[]) => {
    const f = filter.value.trim().toLowerCase();
    list.replaceChildren(...all.filter((s) => s.name.toLowerCase().includes(f)).map((s) =>
      h('li', {}, h('a', { href: `#/schemas/${encodeURIComponent(s.name)}`, class: s.name === name ? 'current' : '' }, s.name))));
  };
  schemas().then((all) => {
    render(all);
    filter.addEventListener('input', () => render(all));
  }, (e) => say(explain(e)));
  if (!name) {
    detail.replaceChildren(h('p', { class: 'note' }, 'Pick a type to see its fields, an example payload and its JSON Schema.'));
    return;
  }
  getSchema(name).then((d) => {
    const root = d.jsonSchema ?? {};
    const props = Object.entries(deref(root, root).properties ?? {});
    detail.replaceChildren(
      h('h3', {}, d.schema.name),
      h('p', { class: 'note' }, `${d.schema.file ?? ''} · ${(d.schema.source ?? '').replace('SCHEMA_SOURCE_', '').toLowerCase()}`),
      h('h4', {}, 'Fields'),
      table(['field', 'type', 'notes'], props.map(([k, p]) => h('tr', {}, h('td', { class: 'id' }, k), h('td', {}, typeOf(p, root)), h('td', {}, deref(p, root).description ?? ''))), 'No fields.'),
      h('h4', {}, 'Example payload'),
      h('pre', { class: 'json example' }, pretty(example(root, root))),
      h('details', {}, h('summary', {}, 'JSON Schema'), h('pre', { class: 'json' }, pretty(root))));
  }, (e) => detail.replaceChildren(h('p', { class: 'error', role: 'alert' }, explain(e))));
}

// ---- a topic -------------------------------------------------------------

function topicView(topic: string): void {
  const stats = h('p', { class: 'note stats' });
  main.replaceChildren(
    h('h2', {}, h('a', { href: '#/topics' }, 'Topics'), ' / ', h('span', { class: 'id' }, topic)),
    stats,
    inspector(topic),
    publishForm(topic),
    history(topic));
  poll(async () => {
    try {
      const r = await listTopics(topic);
      const t = (r.topics ?? []).find((x) => x.topic === topic);
      stats.textContent = t
        ? `${t.subscribers ?? 0} subscriber(s) · ${((t.publishRate ?? 0) * 60).toFixed(1)} events/min · ${t.retained ?? 0} retained`
        : 'No subscribers and no events in the last minute.';
    } catch (e) {
      say(explain(e));
    }
  });
}

function inspector(topic: string): HTMLElement {
  const text = h('input', { type: 'search', placeholder: 'text filter', 'aria-label': 'text filter', class: 'text-filter' });
  const cel = h('input', { type: 'text', placeholder: 'CEL filter, e.g. payload.total_cents > 1000', 'aria-label': 'CEL filter', class: 'cel-filter' });
  const apply = h('button', { type: 'submit' }, 'Apply');
  const pause = h('button', { type: 'button', class: 'pause', 'aria-pressed': 'false' }, 'Pause');
  const clear = h('button', { type: 'button' }, 'Clear');
  const state = h('span', { class: 'stream-state' }, 'connecting…');
  const list = h('ol', { class: 'events live', 'aria-live': 'polite' });
  let paused = false;
  let held = 0;
  let close = () => {};
  const shown = (el: HTMLElement) => {
    const f = text.value.trim().toLowerCase();
    el.hidden = !!f && !(el.textContent ?? '').toLowerCase().includes(f);
  };
  const start = () => {
    close();
    state.textContent = 'connecting…';
    close = openStream(topic, cel.value.trim(), {
      onOpen: () => {
        state.textContent = cel.value.trim() ? 'live, filtered' : 'live';
        state.className = 'stream-state ok';
      },
      onError: (msg, final) => {
        state.textContent = final ? `refused: ${msg}` : msg;
        state.className = 'stream-state bad';
      },
      onEvent: (ev) => {
        let body = ev.data;
        try {
          body = pretty(JSON.parse(ev.data));
        } catch {
          // not JSON: shown as it came
        }
        const item = eventItem({ id: ev.id, type: ev.type, time: new Date().toISOString() }, body);
        shown(item);
        if (paused) {
          item.hidden = true;
          item.dataset.held = '1';
          held++;
          pause.textContent = `Resume (${held} new)`;
        }
        list.prepend(item);
        while (list.children.length > MAX_LIVE) list.lastElementChild?.remove();
      },
    });
  };
  pause.addEventListener('click', () => {
    paused = !paused;
    pause.setAttribute('aria-pressed', String(paused));
    if (!paused) {
      for (const el of list.querySelectorAll<HTMLElement>('[data-held]')) {
        delete el.dataset.held;
        shown(el);
      }
      held = 0;
    }
    pause.textContent = paused ? 'Resume' : 'Pause';
  });
  clear.addEventListener('click', () => list.replaceChildren());
  text.addEventListener('input', () => {
    for (const el of list.querySelectorAll<HTMLElement>('li:not([data-held])')) shown(el);
  });
  const form = h('form', { class: 'bar' }, text, cel, apply, pause, clear);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    start();
  });
  start();
  onLeave(() => close());
  return h('section', { class: 'inspector' }, h('h3', {}, 'Live ', state), form, list);
}

function eventItem(ev: TopicEvent, body: string): HTMLLIElement {
  return h('li', { 'data-id': ev.id },
    h('div', { class: 'meta' }, h('span', { class: 'id' }, ev.id), h('span', { class: 'type' }, ev.type ?? ''), h('time', {}, ev.time ? new Date(ev.time).toLocaleTimeString() : '')),
    h('pre', { class: 'json' }, body));
}

function history(topic: string): HTMLElement {
  const list = h('ol', { class: 'events history' });
  const newest = h('button', { type: 'button', class: 'newest' }, 'Newest');
  const older = h('button', { type: 'button', class: 'older' }, '← Older');
  const newer = h('button', { type: 'button', class: 'newer' }, 'Newer →');
  const oldest = h('button', { type: 'button', class: 'oldest' }, 'Oldest');
  const size = h('select', { 'aria-label': 'events per page', class: 'page-size' },
    ...[5, 20, 50, 100].map((n) => h('option', { value: String(n), selected: n === HISTORY_PAGE }, `${n} per page`)));
  const note = h('span', { class: 'note' });
  let first = '';
  let last = '';
  const show = (evs: TopicEvent[], retained: number, moreOlder: boolean, moreNewer: boolean) => {
    list.replaceChildren(...evs.map((ev) => eventItem(ev, pretty(ev.payload))));
    first = evs[0]?.id ?? '';
    last = evs[evs.length - 1]?.id ?? '';
    older.disabled = !first || !moreOlder;
    newer.disabled = !last || !moreNewer;
    note.textContent = `${evs.length} shown of ${retained} retained`;
  };
  const limit = () => Number(size.value);
  // A page forwards (after) or backwards (before); the API says whether
  // more lie beyond it in that direction, and the other side has more
  // when the page starts (or ends) at an event.
  const page = async (dir: { after?: string; before?: string }) => {
    try {
      const r = await listEvents(topic, dir, limit());
      const evs = r.events ?? [];
      if (dir.before) show(evs, r.retained ?? 0, !!r.more, true);
      else show(evs, r.retained ?? 0, !!dir.after, !!r.more);
    } catch (e) {
      note.textContent = explain(e);
    }
  };
  // The newest page: the events before the topic's last one, and it
  // (the event after them, or the oldest when none lie before it).
  const toNewest = async () => {
    try {
      const t = (await listTopics(topic)).topics?.find((x) => x.topic === topic);
      if (!t?.lastEventId) {
        await page({});
        return;
      }
      const r = await listEvents(topic, { before: t.lastEventId }, limit() - 1);
      const before = r.events ?? [];
      const tail = await listEvents(topic, before.length ? { after: before[before.length - 1].id } : {}, 1);
      show([...before, ...(tail.events ?? [])], tail.retained ?? 0, !!r.more, !!tail.more);
    } catch (e) {
      note.textContent = explain(e);
    }
  };
  newest.addEventListener('click', () => void toNewest());
  oldest.addEventListener('click', () => void page({}));
  older.addEventListener('click', () => void page({ before: first }));
  newer.addEventListener('click', () => void page({ after: last }));
  size.addEventListener('change', () => void toNewest());
  void toNewest();
  return h('section', { class: 'history' }, h('h3', {}, 'History'), h('div', { class: 'bar' }, newest, older, newer, oldest, size, note), list);
}

/**
 * The inputs of a type's top-level scalar fields, generated from its JSON
 * Schema: each writes its field into the JSON of payload, which stays the
 * whole truth (nested messages and lists are edited there).
 */
function fieldInputs(root: JSONSchema, payload: HTMLTextAreaElement): HTMLElement[] {
  const out: HTMLElement[] = [];
  for (const [k, raw] of Object.entries(deref(root, root).properties ?? {})) {
    const p = deref(raw, root);
    const type = Array.isArray(p.type) ? p.type.find((t) => t !== 'null') : p.type;
    let input: HTMLInputElement | HTMLSelectElement;
    let read: () => unknown;
    if (p.enum) {
      input = h('select', { name: k }, ...p.enum.map((v) => h('option', { value: String(v) }, String(v))));
      read = () => input.value;
    } else if (type === 'boolean') {
      const box = h('input', { type: 'checkbox', name: k });
      input = box;
      read = () => box.checked;
    } else if (type === 'integer' || type === 'number') {
      input = h('input', { type: 'number', name: k, step: type === 'integer' ? '1' : 'any' });
      read = () => (input.value === '' ? undefined : Number(input.value));
    } else if (type === 'string') {
      const int64 = p.pattern === '^-?[0-9]+$';
      input = h('input', { type: 'text', name: k, inputmode: int64 ? 'numeric' : 'text', placeholder: int64 ? '64-bit integer' : (p.format ?? '') });
      read = () => (input.value === '' ? undefined : input.value);
    } else {
      continue; // a message or a list: in the JSON
    }
    input.addEventListener(input instanceof HTMLSelectElement || input.type === 'checkbox' ? 'change' : 'input', () => {
      let obj: Record<string, unknown>;
      try {
        obj = JSON.parse(payload.value) as Record<string, unknown>;
      } catch {
        return; // the JSON is being edited: it is not overwritten
      }
      const v = read();
      if (v === undefined) delete obj[k];
      else obj[k] = v;
      payload.value = pretty(obj);
    });
    out.push(h('label', {}, h('span', {}, k), input));
  }
  return out;
}

/** Shows in the generated inputs what the JSON holds, when it parses. */
function syncFields(fields: HTMLElement, payload: HTMLTextAreaElement): void {
  let obj: Record<string, unknown>;
  try {
    obj = JSON.parse(payload.value) as Record<string, unknown>;
  } catch {
    return;
  }
  for (const el of fields.querySelectorAll<HTMLInputElement | HTMLSelectElement>('[name]')) {
    const v = obj?.[el.name];
    if (el instanceof HTMLInputElement && el.type === 'checkbox') el.checked = v === true;
    else el.value = v === undefined || v === null ? '' : String(v);
  }
}

function publishForm(topic: string): HTMLElement {
  const type = h('select', { 'aria-label': 'type', class: 'type' });
  const payload = h('textarea', { rows: '10', spellcheck: 'false', 'aria-label': 'payload', class: 'payload' });
  const err = h('p', { class: 'error', role: 'alert', hidden: true });
  const ok = h('p', { class: 'ok published', hidden: true });
  const fields = h('div', { class: 'fields' });
  payload.addEventListener('input', () => syncFields(fields, payload));
  // Fills in the chosen type's example and its fields, unless another
  // fill began meanwhile (another type chosen), or the payload already
  // holds this type's example and the user edited it while the schema was
  // on its way (choosing the type again must not overwrite what they
  // typed); data-example says whose example the payload holds.
  let fills = 0;
  const fill = async () => {
    const name = type.value;
    const n = ++fills;
    const before = payload.value;
    try {
      const d = await getSchema(name);
      if (n !== fills) return;
      if (payload.dataset.example === name && payload.value !== before) return;
      const root = d.jsonSchema ?? {};
      payload.value = pretty(example(root, root));
      payload.dataset.example = name;
      fields.replaceChildren(...(name.startsWith('google.protobuf.') ? [] : fieldInputs(root, payload)));
      syncFields(fields, payload);
    } catch (e) {
      err.textContent = explain(e);
      err.hidden = false;
    }
  };
  schemas().then((all) => {
    type.replaceChildren(...all.map((s) => h('option', { value: s.name }, s.name)));
    const preferred = all.find((s) => !s.name.startsWith('google.protobuf.')) ?? all[0];
    if (preferred) type.value = preferred.name;
    void fill();
  }, (e) => say(explain(e)));
  type.addEventListener('change', () => void fill());
  const form = h('form', { class: 'publish' },
    h('label', {}, 'Type ', type), fields, payload, err, ok,
    h('div', { class: 'bar' }, h('button', { type: 'submit' }, 'Publish'), h('button', { type: 'button', onclick: () => void fill() }, 'Example')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.hidden = ok.hidden = true;
    let data: unknown;
    try {
      data = JSON.parse(payload.value);
    } catch (x) {
      err.textContent = `Not JSON: ${(x as Error).message}`;
      err.hidden = false;
      return;
    }
    try {
      const r = await publish(topic, type.value, data);
      ok.replaceChildren('Published ', h('span', { class: 'id' }, r.id), r.duplicate ? ' (duplicate)' : '');
      ok.hidden = false;
    } catch (x) {
      err.textContent = explain(x);
      err.hidden = false;
    }
  });
  return h('section', {}, h('h3', {}, `Publish to ${topic}`), form);
}

// ---- routing -------------------------------------------------------------

function route(): void {
  for (const f of stops) f();
  stops = [];
  const [, view = 'topics', arg = ''] = location.hash.split('/');
  const name = decodeURIComponent(arg);
  for (const a of document.querySelectorAll<HTMLAnchorElement>('nav a')) {
    a.classList.toggle('current', a.dataset.view === view || (view === 'topic' && a.dataset.view === 'topics'));
  }
  switch (view) {
    case 'topic':
      topicView(name);
      break;
    case 'nodes':
      nodesView();
      break;
    case 'schemas':
      schemasView(name);
      break;
    case 'revocations':
      revocationsView();
      break;
    default:
      topicsView();
  }
}

window.addEventListener('hashchange', route);
tokenForm();
route();
