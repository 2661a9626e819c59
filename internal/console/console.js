// src/api.ts
var TOKEN_KEY = "herald.console.token";
function token() {
  return sessionStorage.getItem(TOKEN_KEY) ?? "";
}
function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}
var APIError = class extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
  status;
};
function authHeaders() {
  const t = token();
  return t ? { Authorization: `Bearer ${t}` } : {};
}
async function call(path, init = {}) {
  const headers = { ...authHeaders(), ...init.headers };
  let res;
  try {
    res = await fetch(path, { ...init, headers, cache: "no-store" });
  } catch (e) {
    throw new APIError(0, `cannot reach Herald: ${e.message}`);
  }
  const text = await res.text();
  let body = void 0;
  try {
    body = text ? JSON.parse(text) : {};
  } catch {
  }
  if (!res.ok) {
    const msg = body?.message ?? (text.trim() || res.statusText);
    throw new APIError(res.status, msg);
  }
  return body;
}
var listTopics = (pattern) => call(`/v1/topics${pattern ? `?pattern=${encodeURIComponent(pattern)}` : ""}`);
var listNodes = () => call("/v1/nodes");
function listEvents(topic, dir, limit) {
  const q = new URLSearchParams({ limit: String(limit) });
  if (dir.after) q.set("after", dir.after);
  if (dir.before) q.set("before", dir.before);
  return call(`/v1/topics/${encodeURIComponent(topic)}/events?${q}`);
}
var listRevocations = () => call("/v1/revocations");
var revoke = (subject, until) => call("/v1/revocations", {
  method: "POST",
  headers: { "Content-Type": "application/json" },
  body: JSON.stringify({ subject, until: until.toISOString() })
});
var listSchemas = () => call("/v1/schemas");
var getSchema = (name) => call(`/v1/schemas/${encodeURIComponent(name)}`);
async function publish(topic, type, payload) {
  const any = type.startsWith("google.protobuf.") || typeof payload !== "object" || payload === null || Array.isArray(payload) ? { "@type": `type.googleapis.com/${type}`, value: payload } : { "@type": `type.googleapis.com/${type}`, ...payload };
  return call(`/v1/topics/${encodeURIComponent(topic)}/events`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ payload: any })
  });
}

// src/stream.ts
function openStream(topic, filter, h2) {
  const ctl = new AbortController();
  let lastId = "";
  let retry = 2e3;
  let closed = false;
  async function connect() {
    const q = new URLSearchParams({ topic });
    if (filter) q.set("filter", filter);
    const headers = { ...authHeaders(), Accept: "text/event-stream" };
    if (lastId) headers["Last-Event-ID"] = lastId;
    let res;
    try {
      res = await fetch(`/v1/events?${q}`, { headers, signal: ctl.signal, cache: "no-store" });
    } catch (e) {
      if (!closed) again(`cannot reach Herald: ${e.message}`);
      return;
    }
    if (!res.ok || !res.body) {
      let msg = res.statusText;
      try {
        msg = (await res.json()).message ?? msg;
      } catch {
      }
      h2.onError(`${res.status}: ${msg}`, true);
      return;
    }
    h2.onOpen();
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    let id = "";
    let type = "";
    let data = [];
    try {
      for (; ; ) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let nl;
        while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + (buf.startsWith("\r\n", nl) ? 2 : 1));
          if (line === "") {
            if (data.length > 0) {
              if (id) lastId = id;
              h2.onEvent({ id: id || lastId, type: type || "message", data: data.join("\n") });
            }
            type = "";
            data = [];
            continue;
          }
          if (line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let v = colon < 0 ? "" : line.slice(colon + 1);
          if (v.startsWith(" ")) v = v.slice(1);
          if (field === "data") data.push(v);
          else if (field === "event") type = v;
          else if (field === "id") id = v;
          else if (field === "retry" && /^\d+$/.test(v)) retry = Number(v);
        }
      }
    } catch (e) {
      if (closed) return;
      again(`stream dropped: ${e.message}`);
      return;
    }
    if (!closed) again("stream ended");
  }
  function again(why) {
    h2.onError(`${why}; reconnecting in ${retry} ms`, false);
    setTimeout(() => {
      if (!closed) void connect();
    }, retry);
  }
  void connect();
  return () => {
    closed = true;
    ctl.abort();
  };
}

// src/main.ts
var POLL_MS = 2e3;
var MAX_LIVE = 200;
var HISTORY_PAGE = 20;
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (typeof v === "function") el.addEventListener(k.replace(/^on/, ""), v);
    else if (v === true) el.setAttribute(k, "");
    else if (v !== false) el.setAttribute(k, v);
  }
  for (const c of children) {
    if (c !== null && c !== void 0 && c !== false) el.append(c);
  }
  return el;
}
var main = document.getElementById("main");
var banner = document.getElementById("banner");
function say(msg, kind = "error") {
  banner.textContent = msg;
  banner.className = msg ? `banner ${kind}` : "banner";
  banner.hidden = !msg;
}
function explain(e) {
  if (e instanceof APIError) {
    if (e.status === 401) return `Refused (401): ${e.message}. Paste an admin token above.`;
    if (e.status === 403) return `Refused (403): ${e.message}.`;
    return e.status ? `Error ${e.status}: ${e.message}` : e.message;
  }
  return String(e);
}
var stops = [];
function onLeave(f) {
  stops.push(f);
}
function poll(f) {
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
function ago(iso) {
  if (!iso) return "";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1e3));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}
function duration(s = 0) {
  const d = Math.floor(s / 86400);
  const hh = Math.floor(s % 86400 / 3600);
  const m = Math.floor(s % 3600 / 60);
  return d ? `${d}d ${hh}h` : hh ? `${hh}h ${m}m` : `${m}m ${s % 60}s`;
}
var pretty = (v) => JSON.stringify(v, null, 2);
function table(head, rows, empty, num = []) {
  return h(
    "div",
    { class: "scroll" },
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, ...head.map((c, i) => h("th", { scope: "col", class: num.includes(i) ? "num" : "" }, c)))),
      h("tbody", {}, ...rows.length ? rows : [h("tr", {}, h("td", { colspan: String(head.length), class: "empty" }, empty))])
    )
  );
}
function tokenForm() {
  const form = document.getElementById("token-form");
  const input = document.getElementById("token");
  const state = document.getElementById("token-state");
  const show = () => {
    state.textContent = token() ? "token set (this tab only)" : "no token";
  };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    setToken(input.value.trim());
    input.value = "";
    show();
    say("");
    route();
  });
  document.getElementById("forget").addEventListener("click", () => {
    setToken("");
    input.value = "";
    show();
    route();
  });
  show();
}
function topicsView() {
  const pattern = h("input", { type: "search", placeholder: "pattern, e.g. orders.>", "aria-label": "pattern", id: "pattern" });
  const note = h("p", { class: "note" });
  const body = h("div", {});
  main.replaceChildren(h("h2", {}, "Topics"), h("div", { class: "bar" }, pattern), body, note);
  poll(async () => {
    try {
      const r = await listTopics(pattern.value.trim());
      say("");
      const rows = (r.topics ?? []).map((t) => h(
        "tr",
        { "data-topic": t.topic },
        h("td", {}, t.pattern ? h("span", { title: "a pattern subscribed to" }, t.topic, " ", h("em", {}, "(pattern)")) : h("a", { href: `#/topic/${encodeURIComponent(t.topic)}` }, t.topic)),
        h("td", { class: "num subscribers", title: Object.entries(t.subscribersByNode ?? {}).map(([n, c]) => `${n}: ${c}`).join(", ") }, String(t.subscribers ?? 0)),
        h("td", { class: "num" }, ((t.publishRate ?? 0) * 60).toFixed(1)),
        h("td", { class: "id" }, t.lastEventId ?? ""),
        h("td", {}, ago(t.lastEventTime)),
        h("td", { class: "num" }, t.pattern ? "" : String(t.retained ?? 0))
      ));
      body.replaceChildren(table(
        ["topic", "subscribers", "events/min", "last event", "when", "retained"],
        rows,
        "No active topics: a topic is listed while it has subscribers or had events in the last minute.",
        [1, 2, 5]
      ));
      note.textContent = `${r.nodes ?? 0} node(s) reporting${r.more ? "; more topics match than shown" : ""}. Updated every ${POLL_MS / 1e3} s.`;
    } catch (e) {
      say(explain(e));
    }
  });
}
function nodesView() {
  const body = h("div", {});
  main.replaceChildren(h("h2", {}, "Nodes"), body);
  poll(async () => {
    try {
      const r = await listNodes();
      say("");
      const rows = (r.nodes ?? []).map((n) => h(
        "tr",
        { "data-node": n.name },
        h("td", {}, n.name, n.self ? h("em", {}, " (this node)") : ""),
        h("td", {}, n.version ?? ""),
        h("td", {}, duration(n.uptimeSeconds)),
        h("td", { class: "num" }, String(n.connections ?? 0)),
        h("td", { class: n.brokerHealthy ? "ok broker" : "bad broker" }, n.brokerHealthy ? "healthy" : `unhealthy: ${n.brokerError ?? "no report"}`),
        h("td", {}, ago(n.reported))
      ));
      body.replaceChildren(table(["node", "version", "uptime", "streams", "broker", "reported"], rows, "No node reports.", [3]));
    } catch (e) {
      say(explain(e));
    }
  });
}
var REVOKE_FOR = [["1 hour", 3600], ["24 hours", 86400], ["7 days", 7 * 86400], ["30 days", 30 * 86400], ["1 year", 365 * 86400]];
function revocationsView() {
  const subject = h("input", { type: "text", placeholder: "token subject (sub), e.g. billing-service", "aria-label": "subject", class: "subject" });
  const span = h(
    "select",
    { "aria-label": "for how long", class: "until" },
    ...REVOKE_FOR.map(([label, s]) => h("option", { value: String(s), selected: s === 86400 }, `for ${label}`))
  );
  const err = h("p", { class: "error", role: "alert", hidden: true });
  const body = h("div", {});
  const refresh = async () => {
    try {
      const r = await listRevocations();
      say("");
      const rows = (r.revocations ?? []).map((v) => h(
        "tr",
        { "data-subject": v.subject },
        h("td", { class: "id" }, v.subject),
        h("td", {}, new Date(v.until).toLocaleString()),
        h("td", {}, h("button", { type: "button", class: "lift", onclick: () => void lift(v.subject) }, "Lift"))
      ));
      body.replaceChildren(table(["subject", "refused until", ""], rows, "No revocations in force."));
    } catch (e) {
      say(explain(e));
    }
  };
  const lift = async (sub) => {
    try {
      await revoke(sub, new Date(Date.now() - 1e3));
    } catch (e) {
      say(explain(e));
    }
    await refresh();
  };
  const form = h("form", { class: "bar revoke" }, subject, span, h("button", { type: "submit" }, "Revoke"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    err.hidden = true;
    try {
      await revoke(subject.value.trim(), new Date(Date.now() + Number(span.value) * 1e3));
      subject.value = "";
    } catch (x) {
      err.textContent = explain(x);
      err.hidden = false;
    }
    await refresh();
  });
  main.replaceChildren(
    h("h2", {}, "Revocations"),
    h("p", { class: "note" }, "Revoking a subject ends every stream of its tokens on every node within seconds, and refuses its tokens (publish, subscribe, admin) until the time given."),
    form,
    err,
    body
  );
  poll(refresh);
}
var schemaCache;
async function schemas() {
  schemaCache ??= (await listSchemas()).schemas ?? [];
  return schemaCache;
}
function deref(s, root) {
  const m = s.$ref && /^#\/\$defs\/(.+)$/.exec(s.$ref);
  return m ? root.$defs?.[m[1]] ?? {} : s;
}
function example(s, root, depth = 0) {
  s = deref(s, root);
  if (s.enum?.length) return s.enum.find((v) => !String(v).endsWith("_UNSPECIFIED")) ?? s.enum[0];
  const alt = s.oneOf?.[0] ?? s.anyOf?.[0];
  if (alt) return example(alt, root, depth);
  const type = Array.isArray(s.type) ? s.type.find((t) => t !== "null") : s.type;
  switch (type) {
    case "object": {
      const out = {};
      if (depth < 4) {
        for (const [k, p] of Object.entries(s.properties ?? {})) out[k] = example(p, root, depth + 1);
      }
      return out;
    }
    case "array":
      return depth < 4 && s.items ? [example(s.items, root, depth + 1)] : [];
    case "integer":
    case "number":
      return 1;
    case "boolean":
      return true;
    case "string":
      if (s.format === "date-time") return (/* @__PURE__ */ new Date()).toISOString();
      if (s.pattern === "^-?[0-9]+$") return "1";
      if (s.format === "byte") return "";
      return "text";
    default:
      return null;
  }
}
function typeOf(s, root) {
  if (s.$ref) return s.$ref.replace("#/$defs/", "");
  if (s.enum) return `enum: ${s.enum.join(" | ")}`;
  const t = Array.isArray(s.type) ? s.type.join(" | ") : s.type ?? "any";
  if (t === "array" && s.items) return `array of ${typeOf(s.items, root)}`;
  return s.format ? `${t} (${s.format})` : t;
}
function schemasView(name) {
  const filter = h("input", { type: "search", placeholder: "filter types", "aria-label": "filter types" });
  const list = h("ul", { class: "types" });
  const detail = h("div", { class: "detail" });
  main.replaceChildren(h("h2", {}, "Schemas"), h("div", { class: "split" }, h("div", {}, filter, list), detail));
  const render = (all) => {
    const f = filter.value.trim().toLowerCase();
    list.replaceChildren(...all.filter((s) => s.name.toLowerCase().includes(f)).map((s) => h("li", {}, h("a", { href: `#/schemas/${encodeURIComponent(s.name)}`, class: s.name === name ? "current" : "" }, s.name))));
  };
  schemas().then((all) => {
    render(all);
    filter.addEventListener("input", () => render(all));
  }, (e) => say(explain(e)));
  if (!name) {
    detail.replaceChildren(h("p", { class: "note" }, "Pick a type to see its fields, an example payload and its JSON Schema."));
    return;
  }
  getSchema(name).then((d) => {
    const root = d.jsonSchema ?? {};
    const props = Object.entries(deref(root, root).properties ?? {});
    detail.replaceChildren(
      h("h3", {}, d.schema.name),
      h("p", { class: "note" }, `${d.schema.file ?? ""} · ${(d.schema.source ?? "").replace("SCHEMA_SOURCE_", "").toLowerCase()}`),
      h("h4", {}, "Fields"),
      table(["field", "type", "notes"], props.map(([k, p]) => h("tr", {}, h("td", { class: "id" }, k), h("td", {}, typeOf(p, root)), h("td", {}, deref(p, root).description ?? ""))), "No fields."),
      h("h4", {}, "Example payload"),
      h("pre", { class: "json example" }, pretty(example(root, root))),
      h("details", {}, h("summary", {}, "JSON Schema"), h("pre", { class: "json" }, pretty(root)))
    );
  }, (e) => detail.replaceChildren(h("p", { class: "error", role: "alert" }, explain(e))));
}
function topicView(topic) {
  const stats = h("p", { class: "note stats" });
  main.replaceChildren(
    h("h2", {}, h("a", { href: "#/topics" }, "Topics"), " / ", h("span", { class: "id" }, topic)),
    stats,
    inspector(topic),
    publishForm(topic),
    history(topic)
  );
  poll(async () => {
    try {
      const r = await listTopics(topic);
      const t = (r.topics ?? []).find((x) => x.topic === topic);
      stats.textContent = t ? `${t.subscribers ?? 0} subscriber(s) · ${((t.publishRate ?? 0) * 60).toFixed(1)} events/min · ${t.retained ?? 0} retained` : "No subscribers and no events in the last minute.";
    } catch (e) {
      say(explain(e));
    }
  });
}
function inspector(topic) {
  const text = h("input", { type: "search", placeholder: "text filter", "aria-label": "text filter", class: "text-filter" });
  const cel = h("input", { type: "text", placeholder: "CEL filter, e.g. payload.total_cents > 1000", "aria-label": "CEL filter", class: "cel-filter" });
  const apply = h("button", { type: "submit" }, "Apply");
  const pause = h("button", { type: "button", class: "pause", "aria-pressed": "false" }, "Pause");
  const clear = h("button", { type: "button" }, "Clear");
  const state = h("span", { class: "stream-state" }, "connecting…");
  const list = h("ol", { class: "events live", "aria-live": "polite" });
  let paused = false;
  let held = 0;
  let close = () => {
  };
  const shown = (el) => {
    const f = text.value.trim().toLowerCase();
    el.hidden = !!f && !(el.textContent ?? "").toLowerCase().includes(f);
  };
  const start = () => {
    close();
    state.textContent = "connecting…";
    close = openStream(topic, cel.value.trim(), {
      onOpen: () => {
        state.textContent = cel.value.trim() ? "live, filtered" : "live";
        state.className = "stream-state ok";
      },
      onError: (msg, final) => {
        state.textContent = final ? `refused: ${msg}` : msg;
        state.className = "stream-state bad";
      },
      onEvent: (ev) => {
        let body = ev.data;
        try {
          body = pretty(JSON.parse(ev.data));
        } catch {
        }
        const item = eventItem({ id: ev.id, type: ev.type, time: (/* @__PURE__ */ new Date()).toISOString() }, body);
        shown(item);
        if (paused) {
          item.hidden = true;
          item.dataset.held = "1";
          held++;
          pause.textContent = `Resume (${held} new)`;
        }
        list.prepend(item);
        while (list.children.length > MAX_LIVE) list.lastElementChild?.remove();
      }
    });
  };
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    if (!paused) {
      for (const el of list.querySelectorAll("[data-held]")) {
        delete el.dataset.held;
        shown(el);
      }
      held = 0;
    }
    pause.textContent = paused ? "Resume" : "Pause";
  });
  clear.addEventListener("click", () => list.replaceChildren());
  text.addEventListener("input", () => {
    for (const el of list.querySelectorAll("li:not([data-held])")) shown(el);
  });
  const form = h("form", { class: "bar" }, text, cel, apply, pause, clear);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    start();
  });
  start();
  onLeave(() => close());
  return h("section", { class: "inspector" }, h("h3", {}, "Live ", state), form, list);
}
function eventItem(ev, body) {
  return h(
    "li",
    { "data-id": ev.id },
    h("div", { class: "meta" }, h("span", { class: "id" }, ev.id), h("span", { class: "type" }, ev.type ?? ""), h("time", {}, ev.time ? new Date(ev.time).toLocaleTimeString() : "")),
    h("pre", { class: "json" }, body)
  );
}
function history(topic) {
  const list = h("ol", { class: "events history" });
  const newest = h("button", { type: "button", class: "newest" }, "Newest");
  const older = h("button", { type: "button", class: "older" }, "← Older");
  const newer = h("button", { type: "button", class: "newer" }, "Newer →");
  const oldest = h("button", { type: "button", class: "oldest" }, "Oldest");
  const size = h(
    "select",
    { "aria-label": "events per page", class: "page-size" },
    ...[5, 20, 50, 100].map((n) => h("option", { value: String(n), selected: n === HISTORY_PAGE }, `${n} per page`))
  );
  const note = h("span", { class: "note" });
  let first = "";
  let last = "";
  const show = (evs, retained, moreOlder, moreNewer) => {
    list.replaceChildren(...evs.map((ev) => eventItem(ev, pretty(ev.payload))));
    first = evs[0]?.id ?? "";
    last = evs[evs.length - 1]?.id ?? "";
    older.disabled = !first || !moreOlder;
    newer.disabled = !last || !moreNewer;
    note.textContent = `${evs.length} shown of ${retained} retained`;
  };
  const limit = () => Number(size.value);
  const page = async (dir) => {
    try {
      const r = await listEvents(topic, dir, limit());
      const evs = r.events ?? [];
      if (dir.before) show(evs, r.retained ?? 0, !!r.more, true);
      else show(evs, r.retained ?? 0, !!dir.after, !!r.more);
    } catch (e) {
      note.textContent = explain(e);
    }
  };
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
      show([...before, ...tail.events ?? []], tail.retained ?? 0, !!r.more, !!tail.more);
    } catch (e) {
      note.textContent = explain(e);
    }
  };
  newest.addEventListener("click", () => void toNewest());
  oldest.addEventListener("click", () => void page({}));
  older.addEventListener("click", () => void page({ before: first }));
  newer.addEventListener("click", () => void page({ after: last }));
  size.addEventListener("change", () => void toNewest());
  void toNewest();
  return h("section", { class: "history" }, h("h3", {}, "History"), h("div", { class: "bar" }, newest, older, newer, oldest, size, note), list);
}
function fieldInputs(root, payload) {
  const out = [];
  for (const [k, raw] of Object.entries(deref(root, root).properties ?? {})) {
    const p = deref(raw, root);
    const type = Array.isArray(p.type) ? p.type.find((t) => t !== "null") : p.type;
    let input;
    let read;
    if (p.enum) {
      input = h("select", { name: k }, ...p.enum.map((v) => h("option", { value: String(v) }, String(v))));
      read = () => input.value;
    } else if (type === "boolean") {
      const box = h("input", { type: "checkbox", name: k });
      input = box;
      read = () => box.checked;
    } else if (type === "integer" || type === "number") {
      input = h("input", { type: "number", name: k, step: type === "integer" ? "1" : "any" });
      read = () => input.value === "" ? void 0 : Number(input.value);
    } else if (type === "string") {
      const int64 = p.pattern === "^-?[0-9]+$";
      input = h("input", { type: "text", name: k, inputmode: int64 ? "numeric" : "text", placeholder: int64 ? "64-bit integer" : p.format ?? "" });
      read = () => input.value === "" ? void 0 : input.value;
    } else {
      continue;
    }
    input.addEventListener(input instanceof HTMLSelectElement || input.type === "checkbox" ? "change" : "input", () => {
      let obj;
      try {
        obj = JSON.parse(payload.value);
      } catch {
        return;
      }
      const v = read();
      if (v === void 0) delete obj[k];
      else obj[k] = v;
      payload.value = pretty(obj);
    });
    out.push(h("label", {}, h("span", {}, k), input));
  }
  return out;
}
function syncFields(fields, payload) {
  let obj;
  try {
    obj = JSON.parse(payload.value);
  } catch {
    return;
  }
  for (const el of fields.querySelectorAll("[name]")) {
    const v = obj?.[el.name];
    if (el instanceof HTMLInputElement && el.type === "checkbox") el.checked = v === true;
    else el.value = v === void 0 || v === null ? "" : String(v);
  }
}
function publishForm(topic) {
  const type = h("select", { "aria-label": "type", class: "type" });
  const payload = h("textarea", { rows: "10", spellcheck: "false", "aria-label": "payload", class: "payload" });
  const err = h("p", { class: "error", role: "alert", hidden: true });
  const ok = h("p", { class: "ok published", hidden: true });
  const fields = h("div", { class: "fields" });
  payload.addEventListener("input", () => syncFields(fields, payload));
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
      fields.replaceChildren(...name.startsWith("google.protobuf.") ? [] : fieldInputs(root, payload));
      syncFields(fields, payload);
    } catch (e) {
      err.textContent = explain(e);
      err.hidden = false;
    }
  };
  schemas().then((all) => {
    type.replaceChildren(...all.map((s) => h("option", { value: s.name }, s.name)));
    const preferred = all.find((s) => !s.name.startsWith("google.protobuf.")) ?? all[0];
    if (preferred) type.value = preferred.name;
    void fill();
  }, (e) => say(explain(e)));
  type.addEventListener("change", () => void fill());
  const form = h(
    "form",
    { class: "publish" },
    h("label", {}, "Type ", type),
    fields,
    payload,
    err,
    ok,
    h("div", { class: "bar" }, h("button", { type: "submit" }, "Publish"), h("button", { type: "button", onclick: () => void fill() }, "Example"))
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    err.hidden = ok.hidden = true;
    let data;
    try {
      data = JSON.parse(payload.value);
    } catch (x) {
      err.textContent = `Not JSON: ${x.message}`;
      err.hidden = false;
      return;
    }
    try {
      const r = await publish(topic, type.value, data);
      ok.replaceChildren("Published ", h("span", { class: "id" }, r.id), r.duplicate ? " (duplicate)" : "");
      ok.hidden = false;
    } catch (x) {
      err.textContent = explain(x);
      err.hidden = false;
    }
  });
  return h("section", {}, h("h3", {}, `Publish to ${topic}`), form);
}
function route() {
  for (const f of stops) f();
  stops = [];
  const [, view = "topics", arg = ""] = location.hash.split("/");
  const name = decodeURIComponent(arg);
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("current", a.dataset.view === view || view === "topic" && a.dataset.view === "topics");
  }
  switch (view) {
    case "topic":
      topicView(name);
      break;
    case "nodes":
      nodesView();
      break;
    case "schemas":
      schemasView(name);
      break;
    case "revocations":
      revocationsView();
      break;
    default:
      topicsView();
  }
}
window.addEventListener("hashchange", route);
tokenForm();
route();
