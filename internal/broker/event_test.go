package broker_test

import (
	"math"
	"regexp"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/sse"
)

func TestEventIDRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		id   broker.EventID
		want string
	}{
		{broker.EventID{Epoch: "a", Seq: 0}, "a-0"},
		{broker.EventID{Epoch: "k3j9x2", Seq: 1}, "k3j9x2-1"},
		{broker.EventID{Epoch: "0", Seq: 42}, "0-42"},
		{broker.EventID{Epoch: "abc", Seq: math.MaxUint64}, "abc-18446744073709551615"},
		{broker.EventID{Epoch: strings.Repeat("z", 64), Seq: math.MaxUint64}, strings.Repeat("z", 64) + "-18446744073709551615"},
	} {
		s := tt.id.String()
		if s != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.id, s, tt.want)
		}
		if got, ok := broker.ParseEventID(s); !ok || got != tt.id {
			t.Errorf("ParseEventID(%q) = %#v, %v; want %#v, true", s, got, ok, tt.id)
		}
		if err := sse.ValidID(s); err != nil {
			t.Errorf("id %q cannot be written to SSE: %v", s, err)
		}
	}
}

func TestParseEventIDRejects(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"", "-", "-1", "abc", "ABC-1", "aBc-1", "a-", "a-01", "a-00", "a-+1", "a--1", "a-1x", "a-x",
		"a-1 ", " a-1", "a-0x1", "a-1_0", "a-b-1", "a.b-1", "a_b-1", "a-1\n", "a-\x001",
		"a-18446744073709551616",          // overflows uint64
		"a-100000000000000000000",         // 21 digits
		strings.Repeat("a", 65) + "-1",    // epoch over 64 bytes
		strings.Repeat("a", 1<<20) + "-1", // very long
		"a-" + strings.Repeat("9", 1<<20), // very long seq
		"é-1", "a-١", "a-１", "\xff-1", "a-1\xff",
	} {
		if id, ok := broker.ParseEventID(s); ok || id != (broker.EventID{}) {
			t.Errorf("ParseEventID(%.40q) = %#v, %v; want zero, false", s, id, ok)
		}
	}
}

func FuzzParseEventID(f *testing.F) {
	for _, s := range []string{"a-0", "k3j9x2-1", "abc-18446744073709551615", "", "-", "a-", "a-01", "a-+1", "ABC-1", "é-1", "a-b-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, ok := broker.ParseEventID(s)
		if !ok {
			if id != (broker.EventID{}) {
				t.Fatalf("ParseEventID(%q) = %#v, false; want the zero EventID", s, id)
			}
			return
		}
		if id.String() != s {
			t.Fatalf("ParseEventID(%q) = %#v, which formats as %q: not canonical", s, id, id.String())
		}
		if err := sse.ValidID(s); err != nil {
			t.Fatalf("ParseEventID accepts %q, which SSE cannot carry: %v", s, err)
		}
	})
}

var epochRE = regexp.MustCompile(`^[a-z0-9]{1,64}$`)

// FuzzEventIDString checks that every id String can write from a valid
// epoch parses back, and no other.
func FuzzEventIDString(f *testing.F) {
	f.Add("k3j9x2", uint64(7))
	f.Add("", uint64(0))
	f.Add("a-b", uint64(1))
	f.Add("?", uint64(0))
	f.Fuzz(func(t *testing.T, epoch string, seq uint64) {
		in := broker.EventID{Epoch: epoch, Seq: seq}
		got, ok := broker.ParseEventID(in.String())
		if want := epochRE.MatchString(epoch); ok != want || (ok && got != in) {
			t.Fatalf("ParseEventID(%q) = %#v, %v; want ok %v", in.String(), got, ok, want)
		}
	})
}

// TestSizeOfDeletedMarker: the marker of a deleted topic counts as any
// event does, and its empty TypeURL and payload add nothing.
func TestSizeOfDeletedMarker(t *testing.T) {
	t.Parallel()
	ev := &broker.Event{Topic: "game.eu.1", Type: broker.DeletedType}
	if got, want := ev.Size(), len("game.eu.1")+len(broker.DeletedType); got != want {
		t.Errorf("Size of a deletion marker = %d, want %d", got, want)
	}
}
