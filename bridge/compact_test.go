package bridge

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzCompactJSON: compactJSON agrees with encoding/json.Compact on valid
// JSON, whitespace inside strings included.
func FuzzCompactJSON(f *testing.F) {
	for _, s := range []string{
		`{"a": 1, "b": [1, 2, {"c": "d e"}]}`,
		`{"text":"line one\nline two: \" quoted \\ and  spaces "}`,
		`{"k": "\u00e9 \t", "n": null, "t": true}`,
		`[ ]`, `"  "`, `{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if !json.Valid(in) {
			return
		}
		var want bytes.Buffer
		if err := json.Compact(&want, in); err != nil {
			return
		}
		got := compactJSON(bytes.Clone(in))
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("compactJSON(%q) = %q, want %q", in, got, want.Bytes())
		}
	})
}

func BenchmarkCompactJSON(b *testing.B) {
	in := []byte(`{"room": "bench.t00000", "messageId": "0000000017.1767225600123456789", "author": "herald-bench", "text": "` + string(bytes.Repeat([]byte("x"), 150)) + `"}`)
	buf := make([]byte, len(in))
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, in)
		compactJSON(buf)
	}
}
