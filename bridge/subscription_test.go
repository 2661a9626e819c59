package bridge

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/heraldhq/herald/internal/broker"
)

func TestParseSubscription(t *testing.T) {
	t.Parallel()
	topics := func(n int) string {
		q := make([]string, n)
		for i := range q {
			q[i] = "topic=t" + strings.Repeat("x", i)
		}
		return strings.Join(q, "&")
	}
	tests := []struct {
		name     string
		query    string
		header   []string // Last-Event-ID values; nil for none
		patterns []string
		lastID   string // "" means no resume
		wantErr  error
		wantMsg  string
	}{
		{name: "one topic", query: "topic=orders", patterns: []string{"orders"}},
		{name: "repeated topics keep order", query: "topic=orders&topic=billing.*&topic=%3E", patterns: []string{"orders", "billing.*", ">"}},
		{name: "duplicates once", query: "topic=a&topic=b&topic=a", patterns: []string{"a", "b"}},
		{name: "escaped", query: "topic=monitoring%2Eeu.>", patterns: []string{"monitoring.eu.>"}},
		{name: "64 topics", query: topics(64), patterns: strings.Split(strings.ReplaceAll(topics(64), "topic=", ""), "&")},
		{name: "65 topics", query: topics(65), wantErr: broker.ErrBadRequest, wantMsg: "65 topics"},
		{name: "no query", query: "", wantErr: broker.ErrBadRequest, wantMsg: "no topic"},
		{name: "only an id", query: "last_event_id=e-1", wantErr: broker.ErrBadRequest, wantMsg: "no topic"},
		{name: "unknown parameter", query: "topic=a&topics=b", wantErr: broker.ErrBadRequest, wantMsg: `unknown query parameter "topics"`},
		{name: "unknown parameter quoted", query: "topic=a&x%0Ay=1", wantErr: broker.ErrBadRequest, wantMsg: `"x\ny"`},
		{name: "malformed escape", query: "topic=%zz", wantErr: broker.ErrBadRequest, wantMsg: "malformed query"},
		{name: "semicolon", query: "topic=a;b", wantErr: broker.ErrBadRequest, wantMsg: "malformed query"},
		{name: "empty topic", query: "topic=", wantErr: broker.ErrInvalidTopic, wantMsg: "empty"},
		{name: "bad topic", query: "topic=ok&topic=a..b", wantErr: broker.ErrInvalidTopic, wantMsg: `"a..b"`},
		{name: "bad pattern", query: "topic=a.>.b", wantErr: broker.ErrInvalidTopic, wantMsg: "before its last token"},
		{name: "id in query", query: "topic=a&last_event_id=e-5", patterns: []string{"a"}, lastID: "e-5"},
		{name: "id in header", query: "topic=a", header: []string{"e-7"}, patterns: []string{"a"}, lastID: "e-7"},
		{name: "header wins", query: "topic=a&last_event_id=e-5", header: []string{"e-7"}, patterns: []string{"a"}, lastID: "e-7"},
		{name: "first header", query: "topic=a", header: []string{"e-7", "e-8"}, patterns: []string{"a"}, lastID: "e-7"},
		{name: "empty query id", query: "topic=a&last_event_id=", patterns: []string{"a"}},
		{name: "empty header id", query: "topic=a", header: []string{""}, patterns: []string{"a"}},
		// An empty header is the newer position: "none", as in EventSource.
		{name: "empty header wins", query: "topic=a&last_event_id=e-5", header: []string{""}, patterns: []string{"a"}},
		// A garbled id is no error: replay tells the client about the gap.
		{name: "garbled id kept", query: "topic=a&last_event_id=%00%FF%0A", patterns: []string{"a"}, lastID: "\x00\xff\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sub, err := parseSubscription(newSubscribeRequest(tt.query, tt.header), 64)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("error %v, want one wrapping %q saying %q", err, tt.wantErr, tt.wantMsg)
				}
				if HTTPStatus(err) != http.StatusBadRequest {
					t.Errorf("HTTPStatus(%v) = %d, want 400", err, HTTPStatus(err))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range sub.patterns {
				got = append(got, p.String())
			}
			if !slices.Equal(got, tt.patterns) {
				t.Errorf("patterns %q, want %q", got, tt.patterns)
			}
			if sub.resume != (tt.lastID != "") || sub.resume && sub.lastEventID != tt.lastID {
				t.Errorf("resume %v from %q, want resume %v from %q", sub.resume, sub.lastEventID, tt.lastID != "", tt.lastID)
			}
		})
	}
}

func FuzzParseSubscription(f *testing.F) {
	f.Add("topic=orders.*&last_event_id=e-1", "e-2", true)
	f.Add("topic=a&topic=a&topic=%3E", "", true)
	f.Add("topic=a;b&x=%zz", "\x00", false)
	f.Add("topic=&last_event_id=", "\r\n", true)
	f.Fuzz(func(t *testing.T, query, header string, sendHeader bool) {
		var h []string
		if sendHeader {
			h = []string{header}
		}
		sub, err := parseSubscription(newSubscribeRequest(query, h), 64)
		if err != nil {
			msg := err.Error()
			if HTTPStatus(err) != http.StatusBadRequest || strings.ContainsAny(msg, "\r\n") || !utf8.ValidString(msg) {
				t.Fatalf("error %q (status %d), want a one-line 400", msg, HTTPStatus(err))
			}
			return
		}
		if n := len(sub.patterns); n == 0 || n > maxTopicsPerSubscription {
			t.Fatalf("%d patterns", n)
		}
		if sub.resume != (sub.lastEventID != "") {
			t.Fatalf("resume %v with id %q", sub.resume, sub.lastEventID)
		}
		if sendHeader && header != "" && (!sub.resume || sub.lastEventID != header) {
			t.Fatalf("header %q ignored: resume %v from %q", header, sub.resume, sub.lastEventID)
		}
	})
}

func newSubscribeRequest(rawQuery string, lastEventID []string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/v1/events", nil)
	r.URL.RawQuery = rawQuery // set directly: NewRequest panics on a bad URL
	for _, v := range lastEventID {
		r.Header.Add("Last-Event-ID", v)
	}
	return r
}
