package sse_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/sse"
)

var nasty = []string{
	"", "x", "\r", "\n", "\r\n", "\n\r", "\r\r\n", "\x00", "a\x00b",
	"data:", "data: x", "\ndata: x", "\r\ndata: x\r\n\r\n", "id:", "id: 1\n", "event:", "\nevent: evil\n\n",
	"retry:", "\nretry: 1\n", ":", ": comment\n", "\ufeff", "\ufeffdata: x", "naïve ☃", "\xff\xfe", "\xe2\x80",
	" ", "  lead", "a~b", "order.placed", "k3j9x2-18446744073709551615",
}

func FuzzAppendEvent(f *testing.F) {
	for i, s := range nasty {
		f.Add(s, nasty[(i+7)%len(nasty)], []byte(nasty[(i+13)%len(nasty)]))
		f.Add("e-1", s, []byte(s))
	}
	f.Fuzz(func(t *testing.T, id, name string, data []byte) {
		frame := sse.AppendEvent(nil, id, name, data)
		if bytes.IndexByte(frame, '\r') >= 0 {
			t.Fatalf("frame %q has a CR", frame)
		}
		if i := bytes.Index(frame, []byte("\n\n")); i != len(frame)-2 {
			t.Fatalf("frame %q has a blank line before its end", frame)
		}
		for line := range strings.SplitSeq(string(frame[:len(frame)-2]), "\n") {
			if !strings.HasPrefix(line, "id: ") && !strings.HasPrefix(line, "event: ") && !strings.HasPrefix(line, "data: ") {
				t.Fatalf("frame %q has line %q that is no id, event or data field", frame, line)
			}
		}

		// What a client reads: the frame, then an unrelated event that
		// must not inherit anything but the resume point from it.
		next := sse.AppendEvent(frame, "", "", []byte("next"))
		evs := parse(t, next)
		if len(evs) != 2 {
			t.Fatalf("AppendEvent(%q, %q, %q) = %q parsed to %d events %+v, want 1", id, name, data, frame, len(evs)-1, evs)
		}
		ev := evs[0]
		// go-sse, like the spec, does not decode UTF-8 while parsing, so
		// the data comes back byte for byte, only line endings normalised.
		if want := normalise(string(data)); ev.Data != want {
			t.Errorf("data: parsed %q, want %q", ev.Data, want)
		}
		wantID := keep(id, sse.ValidID)
		if ev.LastEventID != wantID {
			t.Errorf("id %q: parsed %q, want %q", id, ev.LastEventID, wantID)
		}
		gotType := ev.Type
		if wantType := keep(name, sse.ValidEventName); gotType != wantType {
			t.Errorf("event name %q: parsed %q, want %q", name, ev.Type, wantType)
		}
		if n := evs[1]; n.Data != "next" || n.Type != "" || n.LastEventID != wantID {
			t.Errorf("following event parsed as %+v, want data %q, no type and id %q", n, "next", wantID)
		}
	})
}

func FuzzAppendComment(f *testing.F) {
	for _, s := range nasty {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		frame := sse.AppendComment(nil, text)
		if frame[0] != ':' || bytes.IndexAny(frame[:len(frame)-1], "\r\n\x00") >= 0 || frame[len(frame)-1] != '\n' {
			t.Fatalf("AppendComment(%q) = %q, want one comment line", text, frame)
		}
		if evs := parse(t, frame); len(evs) != 0 {
			t.Fatalf("AppendComment(%q) = %q produced events %+v", text, frame, evs)
		}
		evs := parse(t, sse.AppendEvent(frame, "", "", []byte("next")))
		if len(evs) != 1 || evs[0].Data != "next" || evs[0].Type != "" || evs[0].LastEventID != "" {
			t.Fatalf("comment %q then an event parsed to %+v, want only the event", text, evs)
		}
	})
}

// keep returns the bytes of s that valid accepts on their own: what
// AppendEvent promises to write for an id or event name.
func keep(s string, valid func(string) error) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if valid(s[i:i+1]) == nil {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
