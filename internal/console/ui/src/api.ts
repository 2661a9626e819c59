// The admin, schema and publish APIs as the console calls them: every
// request carries the operator's token in the Authorization header, never
// in a URL.

const TOKEN_KEY = 'herald.console.token';

/** The token pasted by the operator, kept for this tab only. */
export function token(): string {
  return sessionStorage.getItem(TOKEN_KEY) ?? '';
}

/** Keeps (or, given '', forgets) the operator's token. */
export function setToken(t: string): void {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** A refusal by Herald: the HTTP status and the message it gave. */
export class APIError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** The headers of a call: the token, if one was pasted. */
export function authHeaders(): Record<string, string> {
  const t = token();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

/** Calls Herald and returns its JSON answer, or throws an APIError. */
export async function call<T>(path: string, init: RequestInit = {}): Promise<T> {
  const headers: Record<string, string> = { ...authHeaders(), ...(init.headers as Record<string, string> | undefined) };
  let res: Response;
  try {
    res = await fetch(path, { ...init, headers, cache: 'no-store' });
  } catch (e) {
    throw new APIError(0, `cannot reach Herald: ${(e as Error).message}`);
  }
  const text = await res.text();
  let body: unknown = undefined;
  try {
    body = text ? JSON.parse(text) : {};
  } catch {
    // not JSON: the status line says enough
  }
  if (!res.ok) {
    const msg = (body as { message?: string } | undefined)?.message ?? (text.trim() || res.statusText);
    throw new APIError(res.status, msg);
  }
  return body as T;
}

/** A topic as GET /v1/topics lists it (fields at zero are left out). */
export interface TopicInfo {
  topic: string;
  pattern?: boolean;
  subscribers?: number;
  subscribersByNode?: Record<string, number>;
  publishedLastMinute?: number;
  publishRate?: number;
  lastEventId?: string;
  lastEventTime?: string;
  retained?: number;
}

export interface TopicsResponse {
  topics?: TopicInfo[];
  more?: boolean;
  nodes?: number;
}

export interface NodeInfo {
  name: string;
  self?: boolean;
  version?: string;
  started?: string;
  uptimeSeconds?: number;
  connections?: number;
  brokerHealthy?: boolean;
  brokerError?: string;
  reported?: string;
}

export interface TopicEvent {
  id: string;
  type?: string;
  time?: string;
  payload?: unknown;
  attributes?: Record<string, string>;
}

export interface EventsResponse {
  events?: TopicEvent[];
  more?: boolean;
  retained?: number;
}

export interface SchemaInfo {
  name: string;
  file?: string;
  source?: string;
}

/** A JSON Schema, as far as the console reads one. */
export interface JSONSchema {
  type?: string | string[];
  properties?: Record<string, JSONSchema>;
  items?: JSONSchema;
  enum?: unknown[];
  format?: string;
  pattern?: string;
  description?: string;
  $ref?: string;
  $defs?: Record<string, JSONSchema>;
  additionalProperties?: boolean | JSONSchema;
  oneOf?: JSONSchema[];
  anyOf?: JSONSchema[];
}

export interface SchemaDetail {
  schema: SchemaInfo;
  jsonSchema?: JSONSchema;
}

export const listTopics = (pattern: string) =>
  call<TopicsResponse>(`/v1/topics${pattern ? `?pattern=${encodeURIComponent(pattern)}` : ''}`);

export const listNodes = () => call<{ nodes?: NodeInfo[] }>('/v1/nodes');

export function listEvents(topic: string, dir: { after?: string; before?: string }, limit: number) {
  const q = new URLSearchParams({ limit: String(limit) });
  if (dir.after) q.set('after', dir.after);
  if (dir.before) q.set('before', dir.before);
  return call<EventsResponse>(`/v1/topics/${encodeURIComponent(topic)}/events?${q}`);
}

export interface Revocation {
  subject: string;
  until: string;
}

export const listRevocations = () => call<{ revocations?: Revocation[] }>('/v1/revocations');

/** Ends subject's streams and refuses its tokens until until (a past time lifts it). */
export const revoke = (subject: string, until: Date) =>
  call<{ revocation: Revocation }>('/v1/revocations', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ subject, until: until.toISOString() }),
  });

export const listSchemas = () => call<{ schemas?: SchemaInfo[] }>('/v1/schemas');

export const getSchema = (name: string) => call<SchemaDetail>(`/v1/schemas/${encodeURIComponent(name)}`);

/** Publishes payload (the message's JSON) as type to topic; returns the id. */
export async function publish(topic: string, type: string, payload: unknown): Promise<{ id: string; duplicate?: boolean }> {
  // protojson's Any form: a well-known type with a special JSON form
  // (Struct, Value, Timestamp, wrappers...) goes in "value".
  const any = type.startsWith('google.protobuf.') || typeof payload !== 'object' || payload === null || Array.isArray(payload)
    ? { '@type': `type.googleapis.com/${type}`, value: payload }
    : { '@type': `type.googleapis.com/${type}`, ...(payload as object) };
  return call(`/v1/topics/${encodeURIComponent(topic)}/events`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ payload: any }),
  });
}
