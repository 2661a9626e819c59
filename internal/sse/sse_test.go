package sse_test

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"

	gosse "github.com/tmaxmax/go-sse"

	"github.com/heraldhq/herald/internal/sse"
)

func TestAppendEvent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		id, event      string
		data           string
		want           string
		wantParsedData string // what a client sees; defaults to data
	}{
		{name: "data only", data: "hello", want: "data: hello\n\n"},
		{name: "empty data", data: "", want: "data: \n\n"},
		{name: "id and event", id: "k3j9-12", event: "order.placed", data: `{"a":1}`,
			want: "id: k3j9-12\nevent: order.placed\ndata: {\"a\":1}\n\n"},
		{name: "id without event", id: "e-1", data: "x", want: "id: e-1\ndata: x\n\n"},
		{name: "event without id", event: "ping", data: "x", want: "event: ping\ndata: x\n\n"},
		{name: "LF", data: "a\nb", want: "data: a\ndata: b\n\n", wantParsedData: "a\nb"},
		{name: "CR", data: "a\rb", want: "data: a\ndata: b\n\n", wantParsedData: "a\nb"},
		{name: "CRLF is one line break", data: "a\r\nb", want: "data: a\ndata: b\n\n", wantParsedData: "a\nb"},
		{name: "LF CR is two", data: "a\n\rb", want: "data: a\ndata: \ndata: b\n\n", wantParsedData: "a\n\nb"},
		{name: "CR CRLF is two", data: "a\r\r\nb", want: "data: a\ndata: \ndata: b\n\n", wantParsedData: "a\n\nb"},
		{name: "trailing LF", data: "a\n", want: "data: a\ndata: \n\n"},
		{name: "trailing CR", data: "a\r", want: "data: a\ndata: \n\n", wantParsedData: "a\n"},
		{name: "only LF", data: "\n", want: "data: \ndata: \n\n"},
		{name: "blank lines in data", data: "a\n\n\nb", want: "data: a\ndata: \ndata: \ndata: b\n\n"},
		{name: "leading space survives", data: " x\n  y", want: "data:  x\ndata:   y\n\n"},
		{name: "NUL passes", data: "a\x00b", want: "data: a\x00b\n\n"},
		{name: "BOM in data passes", data: "\ufeffx", want: "data: \ufeffx\n\n"},
		{name: "field injection in data",
			data:           "x\n\nevent: evil\nid: 666\ndata: y",
			want:           "data: x\ndata: \ndata: event: evil\ndata: id: 666\ndata: data: y\n\n",
			wantParsedData: "x\n\nevent: evil\nid: 666\ndata: y"},
		{name: "id chars dropped", id: "a\nb c\x00d\r", data: "x", want: "id: abcd\ndata: x\n\n"},
		{name: "id injection", id: "1\r\nevent: evil\n\ndata: y", data: "x",
			want: "id: 1event:evildata:y\ndata: x\n\n"},
		{name: "event injection", event: "a\ndata: evil\r\n", data: "x",
			want: "event: adata:evil\ndata: x\n\n"},
		{name: "non-ASCII event dropped", event: "café", data: "x", want: "event: caf\ndata: x\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := sse.AppendEvent(nil, tt.id, tt.event, []byte(tt.data))
			if string(got) != tt.want {
				t.Fatalf("AppendEvent(%q, %q, %q)\n got %q\nwant %q", tt.id, tt.event, tt.data, got, tt.want)
			}
			wantData := tt.wantParsedData
			if wantData == "" {
				wantData = tt.data
			}
			ev := parseOne(t, got)
			if ev.Data != wantData {
				t.Errorf("parsed data = %q, want %q", ev.Data, wantData)
			}
		})
	}
}

func TestAppendEventAppends(t *testing.T) {
	t.Parallel()
	dst := make([]byte, 0, 64)
	dst = append(dst, "prefix"...)
	got := sse.AppendEvent(dst, "i", "e", []byte("d"))
	if want := "prefixid: i\nevent: e\ndata: d\n\n"; string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if &got[0] != &dst[0] {
		t.Error("AppendEvent reallocated a buffer that had room")
	}
}

func TestAppendID(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]string{
		"e-1":        "id: e-1\n\n",
		"a\nb\r\x00": "id: ab\n\n",
		"":           "id: \n\n", // an empty id resets the client's resume point
	} {
		if got := sse.AppendID(nil, id); string(got) != want {
			t.Errorf("AppendID(%q) = %q, want %q", id, got, want)
		}
	}
}

func TestAppendRetry(t *testing.T) {
	t.Parallel()
	for ms, want := range map[int64]string{
		0:             "retry: 0\n",
		3000:          "retry: 3000\n",
		-1:            "retry: 0\n",
		math.MinInt64: "retry: 0\n",
		math.MaxInt64: "retry: 9223372036854775807\n",
	} {
		got := sse.AppendRetry(nil, ms)
		if string(got) != want {
			t.Errorf("AppendRetry(%d) = %q, want %q", ms, got, want)
		}
		// A retry line ends no block, so it never surfaces as an event.
		if evs := parse(t, got); len(evs) != 0 {
			t.Errorf("AppendRetry(%d) produced events %+v", ms, evs)
		}
	}
}

func TestAppendComment(t *testing.T) {
	t.Parallel()
	for text, want := range map[string]string{
		"":                       ":\n",
		"keepalive":              ": keepalive\n",
		" x":                     ":  x\n",
		"a\rb\nc\x00d\r\n":       ": a b c d  \n",
		"x\n\ndata: evil\nid: 1": ": x  data: evil id: 1\n",
	} {
		got := sse.AppendComment(nil, text)
		if string(got) != want {
			t.Errorf("AppendComment(%q) = %q, want %q", text, got, want)
		}
		// A comment ends no block and must not leak into the next event.
		evs := parse(t, sse.AppendEvent(got, "", "", []byte("x")))
		if len(evs) != 1 || evs[0] != (gosse.Event{Data: "x"}) {
			t.Errorf("AppendComment(%q) then an event parsed to %+v, want only the event", text, evs)
		}
	}
}

func TestValidID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id   string
		want error
	}{
		{"a", nil},
		{"k3j9x2-18446744073709551615", nil},
		{"AZaz09-._~:", nil},
		{strings.Repeat("a", sse.MaxIDLen), nil},
		{"", sse.ErrEmpty},
		{strings.Repeat("a", sse.MaxIDLen+1), sse.ErrTooLong},
		{"a b", sse.ErrBadChar},
		{"a\nb", sse.ErrBadChar},
		{"a\x00", sse.ErrBadChar},
		{"é", sse.ErrBadChar},
		{"a/b", sse.ErrBadChar},
		{"a,b", sse.ErrBadChar},
	}
	for _, tt := range tests {
		if err := sse.ValidID(tt.id); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("ValidID(%q) = %v, want %v", tt.id, err, tt.want)
		}
	}
}

func TestValidEventName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		want error
	}{
		{"message", nil},
		{"order.placed", nil},
		{"AZaz09-._:", nil},
		{strings.Repeat("e", sse.MaxEventNameLen), nil},
		{"", sse.ErrEmpty},
		{strings.Repeat("e", sse.MaxEventNameLen+1), sse.ErrTooLong},
		{"a~b", sse.ErrBadChar},
		{"a b", sse.ErrBadChar},
		{"a\r", sse.ErrBadChar},
		{"a\x00", sse.ErrBadChar},
		{"café", sse.ErrBadChar},
	}
	for _, tt := range tests {
		if err := sse.ValidEventName(tt.name); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("ValidEventName(%q) = %v, want %v", tt.name, err, tt.want)
		}
	}
}

// TestRoundTrip checks that an independent parser reads back what was
// written. Parsers turn CR and CRLF into LF, so data comes back normalised.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	datas := []string{
		"", "x", " lead", "trail ", "\n", "\r", "\r\n", "\n\n", "\r\r", "\n\r",
		"a\nb\rc\r\nd", "a\r\n\r\nb", "\r\n\n\r", "{\"k\":\"v\"}\n",
		"data: x", ": comment", "\ufeffbom", "naïve ☃ 🎉", "\x00", "\xff\xfe",
		strings.Repeat("0123456789abcdef\r\n", 1000),
	}
	for _, data := range datas {
		for _, hdr := range []struct{ id, event string }{{"", ""}, {"e-1", ""}, {"", "t"}, {"ep0ch-42", "order.placed:v1"}} {
			frame := sse.AppendEvent(nil, hdr.id, hdr.event, []byte(data))
			ev := parseOne(t, frame)
			if want := normalise(data); ev.Data != want {
				t.Errorf("data %q: parsed %q, want %q", data, ev.Data, want)
			}
			if ev.LastEventID != hdr.id || ev.Type != hdr.event {
				t.Errorf("data %q: parsed id %q type %q, want %q %q", data, ev.LastEventID, ev.Type, hdr.id, hdr.event)
			}
		}
	}
}

// TestStream checks a sequence of blocks as a stream handler writes them.
func TestStream(t *testing.T) {
	t.Parallel()
	var b []byte
	b = sse.AppendRetry(b, 2000)
	b = sse.AppendComment(b, "hello")
	b = sse.AppendEvent(b, "e-1", "a", []byte("one\ntwo"))
	b = sse.AppendComment(b, "")
	b = sse.AppendEvent(b, "", "", []byte("three"))
	b = sse.AppendID(b, "e-5")
	b = sse.AppendEvent(b, "e-6", "b", []byte(""))
	var got []gosse.Event
	for _, ev := range parse(t, b) {
		if ev.Data == "" && ev.Type == "" {
			continue // go-sse surfaces the id-only block as an empty event
		}
		got = append(got, ev)
	}
	want := []gosse.Event{
		{LastEventID: "e-1", Type: "a", Data: "one\ntwo"},
		{LastEventID: "e-1", Type: "", Data: "three"},
		{LastEventID: "e-6", Type: "b", Data: ""},
	}
	if len(got) != len(want) {
		t.Fatalf("got events %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	// The id-only block moves the resume point without an event of its own.
	b = sse.AppendID(nil, "e-9")
	b = sse.AppendEvent(b, "", "", []byte("x"))
	evs := parse(t, b)
	if last := evs[len(evs)-1]; last.LastEventID != "e-9" || last.Data != "x" {
		t.Errorf("after AppendID: last event %+v, want id e-9 data x", last)
	}
}

func TestAppendDoesNotAllocate(t *testing.T) {
	data := []byte(strings.Repeat(`{"order":"o-1","total":12.5}`+"\n", 8))
	buf := make([]byte, 0, 4096)
	for name, f := range map[string]func(){
		"AppendEvent":   func() { buf = sse.AppendEvent(buf[:0], "k3j9x2-123456", "order.placed", data) },
		"AppendID":      func() { buf = sse.AppendID(buf[:0], "k3j9x2-123456") },
		"AppendRetry":   func() { buf = sse.AppendRetry(buf[:0], 3000) },
		"AppendComment": func() { buf = sse.AppendComment(buf[:0], "keepalive") },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s into a preallocated buffer: %v allocs, want 0", name, n)
		}
	}
}

func BenchmarkAppendEvent(b *testing.B) {
	for _, bc := range []struct {
		name string
		data []byte
	}{
		{"small", []byte(`{"order":"o-1","total":12.5}`)},
		{"4KiB", bytes.Repeat([]byte("x"), 4096)},
		{"4KiB-multiline", bytes.Repeat([]byte("0123456789abcde\n"), 256)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 0, 2*len(bc.data)+256)
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.data)))
			for b.Loop() {
				buf = sse.AppendEvent(buf[:0], "k3j9x2-123456", "order.placed", bc.data)
			}
		})
	}
}

func BenchmarkAppendComment(b *testing.B) {
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = sse.AppendComment(buf[:0], "keepalive")
	}
}

// parse reads frame with go-sse, an independent client implementation.
func parse(tb testing.TB, frame []byte) []gosse.Event {
	tb.Helper()
	var evs []gosse.Event
	cfg := &gosse.ReadConfig{MaxEventSize: 2*len(frame) + 4096}
	for ev, err := range gosse.Read(bytes.NewReader(frame), cfg) {
		if err != nil {
			tb.Fatalf("parsing %q: %v", frame, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

func parseOne(tb testing.TB, frame []byte) gosse.Event {
	tb.Helper()
	evs := parse(tb, frame)
	if len(evs) != 1 {
		tb.Fatalf("frame %q parsed to %d events %+v, want 1", frame, len(evs), evs)
	}
	return evs[0]
}

var lineEndings = strings.NewReplacer("\r\n", "\n", "\r", "\n")

// normalise turns CRLF and CR into LF, as SSE parsers do.
func normalise(s string) string { return lineEndings.Replace(s) }
