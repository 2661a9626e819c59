// A live SSE stream read with fetch rather than EventSource, so that the
// token goes in the Authorization header and never in a URL. It parses the
// event stream format, reconnects with Last-Event-ID as EventSource would,
// and stops for good on a refusal, reporting Herald's message.

import { authHeaders } from './api';

export interface StreamEvent {
  id: string;
  type: string;
  data: string;
}

export interface StreamHandlers {
  onEvent(ev: StreamEvent): void;
  /** The stream is open (again). */
  onOpen(): void;
  /** The stream dropped and will reconnect, or (final) was refused. */
  onError(message: string, final: boolean): void;
}

/** Opens /v1/events?topic=...&filter=... and returns a function closing it. */
export function openStream(topic: string, filter: string, h: StreamHandlers): () => void {
  const ctl = new AbortController();
  let lastId = '';
  let retry = 2000;
  let closed = false;

  async function connect(): Promise<void> {
    const q = new URLSearchParams({ topic });
    if (filter) q.set('filter', filter);
    const headers: Record<string, string> = { ...authHeaders(), Accept: 'text/event-stream' };
    if (lastId) headers['Last-Event-ID'] = lastId;
    let res: Response;
    try {
      res = await fetch(`/v1/events?${q}`, { headers, signal: ctl.signal, cache: 'no-store' });
    } catch (e) {
      if (!closed) again(`cannot reach Herald: ${(e as Error).message}`);
      return;
    }
    if (!res.ok || !res.body) {
      let msg = res.statusText;
      try {
        msg = ((await res.json()) as { message?: string }).message ?? msg;
      } catch {
        // keep the status text
      }
      h.onError(`${res.status}: ${msg}`, true);
      return;
    }
    h.onOpen();
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let id = '';
    let type = '';
    let data: string[] = [];
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let nl: number;
        while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + (buf.startsWith('\r\n', nl) ? 2 : 1));
          if (line === '') {
            if (data.length > 0) {
              if (id) lastId = id;
              h.onEvent({ id: id || lastId, type: type || 'message', data: data.join('\n') });
            }
            type = '';
            data = [];
            continue;
          }
          if (line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let v = colon < 0 ? '' : line.slice(colon + 1);
          if (v.startsWith(' ')) v = v.slice(1);
          if (field === 'data') data.push(v);
          else if (field === 'event') type = v;
          else if (field === 'id') id = v;
          else if (field === 'retry' && /^\d+$/.test(v)) retry = Number(v);
        }
      }
    } catch (e) {
      if (closed) return;
      again(`stream dropped: ${(e as Error).message}`);
      return;
    }
    if (!closed) again('stream ended');
  }

  function again(why: string): void {
    h.onError(`${why}; reconnecting in ${retry} ms`, false);
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
