package brokertest

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/heraldhq/herald/internal/broker"
)

// testSchemaStore: a broker that is also a broker.SchemaStore keeps
// registrations byte-exact and in order, LoadSchemas skips the first ones,
// another node sees them, and SaveSchemas fails with ErrClosed after Close.
func (s *suite) testSchemaStore(t *testing.T) {
	ctx := s.ctx(t)
	b := s.newBroker(t, roomy)
	store, ok := b.(broker.SchemaStore)
	if !ok {
		t.Skip("the broker is not a broker.SchemaStore")
	}
	load := func(st broker.SchemaStore, skip int) [][]byte {
		t.Helper()
		sets, err := st.LoadSchemas(ctx, skip)
		if err != nil {
			t.Fatalf("LoadSchemas(%d): %v", skip, err)
		}
		return sets
	}
	if sets := load(store, 0); len(sets) != 0 {
		t.Fatalf("a fresh broker has %d schema registrations", len(sets))
	}
	var saved [][]byte
	for i := range 3 {
		set := fmt.Appendf(nil, "\x0a\x05set-%d\x00\xff", i) // opaque bytes, not UTF-8
		saved = append(saved, bytes.Clone(set))
		if err := store.SaveSchemas(ctx, set); err != nil {
			t.Fatalf("SaveSchemas: %v", err)
		}
	}
	for skip := range len(saved) + 2 {
		checkSets(t, fmt.Sprintf("LoadSchemas(%d)", skip), load(store, skip), saved[min(skip, len(saved)):])
	}

	if s.opts.NewNode != nil {
		n2, ok := s.newNode(t, b).(broker.SchemaStore)
		if !ok {
			t.Fatal("the broker is a broker.SchemaStore but another node on it is not")
		}
		checkSets(t, "LoadSchemas(0) on another node", load(n2, 0), saved)
		set := []byte("from node 2")
		if err := n2.SaveSchemas(ctx, set); err != nil {
			t.Fatalf("SaveSchemas on another node: %v", err)
		}
		saved = append(saved, bytes.Clone(set))
		checkSets(t, "LoadSchemas(1) after another node saved", load(store, 1), saved[1:])
	}

	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := store.SaveSchemas(ctx, []byte("late")); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("SaveSchemas after Close: %v; want ErrClosed", err)
	}
}

func checkSets(t *testing.T, what string, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d registrations, want %d", what, len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("%s: registration %d is %q, want %q", what, i, got[i], want[i])
		}
	}
}
