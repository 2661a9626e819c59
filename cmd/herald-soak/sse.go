package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// An sseEvent is one dispatched SSE event.
type sseEvent struct {
	id, typ, data string
}

// An sseStream reads a text/event-stream body, written here from the
// WHATWG rules (fields id, event, data and retry; comments; CRLF, CR or
// LF line ends are not all handled: Herald writes LF).
type sseStream struct {
	body  io.ReadCloser
	br    *bufio.Reader
	retry string // the last retry: field seen
}

// next returns the next event; at the end of the stream, the read's error
// (io.EOF when the server closed it).
func (s *sseStream) next() (sseEvent, error) {
	var ev sseEvent
	var data []string
	has := false
	for {
		line, err := s.br.ReadString('\n')
		if err != nil {
			return sseEvent{}, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if has {
				ev.data = strings.Join(data, "\n")
				if ev.typ == "" {
					ev.typ = "message"
				}
				return ev, nil
			}
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			ev.id, has = value, true
		case "event":
			ev.typ, has = value, true
		case "data":
			data, has = append(data, value), true
		case "retry":
			s.retry = value
		}
	}
}

func (s *sseStream) close() { s.body.Close() }

// openSSE opens GET /v1/events?query with token and, if set, Last-Event-ID.
// A status other than 200 is returned with a nil stream and an error
// holding the answer's body.
func openSSE(ctx context.Context, c *http.Client, srv *server, query url.Values, token, lastID string) (*sseStream, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+srv.http+"/v1/events?"+query.Encode(), nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+token)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, resp.StatusCode, fmt.Errorf("GET /v1/events: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		resp.Body.Close()
		return nil, resp.StatusCode, fmt.Errorf("GET /v1/events: Content-Type %q", ct)
	}
	return &sseStream{body: resp.Body, br: bufio.NewReaderSize(resp.Body, 4096)}, resp.StatusCode, nil
}

// sseClient is an HTTP client for SSE streams: no connection is reused,
// so that closing a stream closes its connection. rcvbuf, when set, is the
// socket's receive buffer, small for the slow readers so that their
// window fills soon after they stop reading.
func sseClient(rcvbuf int) *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	return &http.Client{Transport: &http.Transport{
		DialContext:           d.DialContext,
		DisableKeepAlives:     true,
		ResponseHeaderTimeout: 30 * time.Second,
	}}
}

// A cursor follows one subscription across its streams: the last id seen,
// which the next stream resumes from, and the check that ids only go up.
type cursor struct {
	lastID string
	epoch  string
	seq    uint64
}

// parseID splits an event id, <epoch>-<seq> as docs/clients.md describes
// it, parsed here rather than with Herald's own code.
func parseID(id string) (epoch string, seq uint64, ok bool) {
	i := strings.LastIndexByte(id, '-')
	if i <= 0 {
		return "", 0, false
	}
	seq, err := strconv.ParseUint(id[i+1:], 10, 64)
	return id[:i], seq, err == nil
}

// see records an event's id; it reports false when the id is not above
// the one before it (equal passes when equal is set: herald.synced carries
// the snapshot's position, which may be its last event's), or does not
// parse as Herald's.
func (c *cursor) see(id string, equal bool) (ok bool, why string) {
	epoch, seq, parsed := parseID(id)
	if !parsed {
		return false, fmt.Sprintf("id %q is not an event id", id)
	}
	defer func() { c.lastID, c.epoch, c.seq = id, epoch, seq }()
	if c.lastID == "" || epoch != c.epoch {
		return true, ""
	}
	if seq > c.seq || equal && seq == c.seq {
		return true, ""
	}
	return false, fmt.Sprintf("id %s after %s", id, c.lastID)
}
