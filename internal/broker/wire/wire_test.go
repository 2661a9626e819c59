package wire_test

import (
	"bytes"
	"maps"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/wire"
)

func TestRoundTrip(t *testing.T) {
	for _, ev := range []*broker.Event{
		{Topic: "orders.eu", Type: "orders.v1.OrderPlaced", TypeURL: "type.googleapis.com/orders.v1.OrderPlaced",
			Payload: []byte{0, 1, 2, 0xff}, Attributes: map[string]string{"a": "b", "empty": "", "nl": "x\ny", "ü": "✉"},
			Time: time.Unix(1700000000, 123456789)},
		{Topic: "t", Time: time.Unix(0, 1)},
		{Topic: "traced", Type: "x", Payload: []byte("p"), Time: time.Unix(1700000000, 7),
			TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TraceState: "vendor=a,other=b"},
		// The marker of a deleted topic: no TypeURL, no payload.
		{Topic: "game.eu.1", Type: broker.DeletedType, Time: time.Unix(1700000000, 5)},
		{},
	} {
		b := wire.Append([]byte("prefix"), ev)
		if !bytes.HasPrefix(b, []byte("prefix")) || len(b)-len("prefix") != wire.Size(ev) {
			t.Fatalf("Append wrote %d bytes after the prefix, Size says %d", len(b)-len("prefix"), wire.Size(ev))
		}
		got, err := wire.Decode(b[len("prefix"):])
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		if got.Topic != ev.Topic || got.Type != ev.Type || got.TypeURL != ev.TypeURL || !bytes.Equal(got.Payload, ev.Payload) ||
			!maps.Equal(got.Attributes, ev.Attributes) || !got.Time.Equal(ev.Time) ||
			got.TraceParent != ev.TraceParent || got.TraceState != ev.TraceState {
			t.Errorf("round trip of %+v gave %+v", ev, got)
		}
	}
}

// TestDecodeWithoutTraceContext: an event stored before the trace context
// was carried (fields 1-6 only, bytes as an older node wrote them) decodes
// with none.
func TestDecodeWithoutTraceContext(t *testing.T) {
	old := []byte{0x0a, 1, 'a', 0x12, 1, 'x', 0x22, 1, 'p', 0x30, 5}
	got, err := wire.Decode(old)
	if err != nil || got.Topic != "a" || got.Type != "x" || string(got.Payload) != "p" || got.Time.UnixNano() != 5 {
		t.Fatalf("Decode(old encoding) = %+v, %v", got, err)
	}
	if got.TraceParent != "" || got.TraceState != "" {
		t.Errorf("an event stored without trace context decoded with %q, %q", got.TraceParent, got.TraceState)
	}
	// The other way round, an encoding without trace context is the old
	// one byte for byte, so that older nodes read what newer ones write.
	if b := wire.Append(nil, &broker.Event{Topic: "a", Type: "x", Payload: []byte("p"), Time: time.Unix(0, 5)}); string(b) != string(old) {
		t.Errorf("Append without trace context = %x, want %x", b, old)
	}
}

func TestDecodeSkipsUnknownFields(t *testing.T) {
	b := wire.Append(nil, &broker.Event{Topic: "a", Time: time.Unix(1, 0)})
	b = append(b, 0x78, 0x05)         // field 15, varint 5
	b = append(b, 0x82, 0x01, 1, 'x') // field 16, bytes "x"
	got, err := wire.Decode(b)
	if err != nil || got.Topic != "a" {
		t.Fatalf("Decode with unknown fields = %+v, %v", got, err)
	}
}

func TestDecodeRejectsGarbage(t *testing.T) {
	for _, b := range [][]byte{{0x0a}, {0x0a, 5, 'a'}, {0xff}, {0x30}} {
		if _, err := wire.Decode(b); err == nil {
			t.Errorf("Decode(%x) succeeded", b)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(wire.Append(nil, &broker.Event{Topic: "orders.eu", Type: "x", Payload: []byte("p"), Attributes: map[string]string{"k": "v"}, Time: time.Unix(5, 5)}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := wire.Decode(b)
		if err != nil {
			return
		}
		again, err := wire.Decode(wire.Append(nil, ev))
		if err != nil {
			t.Fatalf("re-encoding a decoded event does not decode: %v", err)
		}
		if again.Topic != ev.Topic || again.Type != ev.Type || again.TypeURL != ev.TypeURL || !bytes.Equal(again.Payload, ev.Payload) ||
			!maps.Equal(again.Attributes, ev.Attributes) || !again.Time.Equal(ev.Time) ||
			again.TraceParent != ev.TraceParent || again.TraceState != ev.TraceState {
			t.Fatalf("not stable: %+v then %+v", ev, again)
		}
	})
}

// TestDecodeOwned: DecodeOwned decodes as Decode does, its Payload in the
// bytes handed over (and capped there, so that an append cannot write
// over what follows), where Decode's is a copy.
func TestDecodeOwned(t *testing.T) {
	ev := &broker.Event{Topic: "t", Type: "x", Payload: []byte("payload"), Attributes: map[string]string{"a": "b"}, Time: time.Unix(1700000000, 7)}
	b := wire.Append(nil, ev)
	owned, err := wire.DecodeOwned(b)
	if err != nil {
		t.Fatal(err)
	}
	copied, err := wire.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if owned.Topic != copied.Topic || owned.Type != copied.Type || !bytes.Equal(owned.Payload, copied.Payload) ||
		!maps.Equal(owned.Attributes, copied.Attributes) || !owned.Time.Equal(copied.Time) {
		t.Errorf("DecodeOwned gave %+v, Decode %+v", owned, copied)
	}
	within := func(p []byte) bool {
		return len(p) > 0 && cap(b) > 0 && &p[0] == &b[bytes.Index(b, []byte("payload"))]
	}
	if !within(owned.Payload) || cap(owned.Payload) != len(owned.Payload) {
		t.Errorf("DecodeOwned's Payload is not the bytes handed over, capped (len %d, cap %d)", len(owned.Payload), cap(owned.Payload))
	}
	if within(copied.Payload) {
		t.Error("Decode's Payload aliases its input")
	}
}

// BenchmarkDecode is a node's decoding of each event it reads from a
// networked broker: a chat event of about 300 bytes.
func BenchmarkDecode(b *testing.B) {
	ev := &broker.Event{Topic: "bench.t00000", Type: "chat.v1.ChatMessage", TypeURL: "type.googleapis.com/chat.v1.ChatMessage",
		Payload: bytes.Repeat([]byte("x"), 256), Time: time.Unix(1700000000, 7)}
	data := wire.Append(nil, ev)
	for _, bc := range []struct {
		name   string
		decode func([]byte) (*broker.Event, error)
	}{{"copy", wire.Decode}, {"owned", wire.DecodeOwned}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.decode(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
