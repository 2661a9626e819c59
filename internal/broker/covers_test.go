package broker_test

import (
	"testing"

	"github.com/heraldhq/herald/internal/broker"
)

func TestCovers(t *testing.T) {
	cases := []struct {
		grant, want string
		ok          bool
	}{
		{"orders.eu", "orders.eu", true},
		{"orders.eu", "orders.us", false},
		{"orders.*", "orders.eu", true},
		{"orders.*", "orders.*", true},
		{"orders.*", "orders", false},
		{"orders.*", "orders.>", false},
		{"orders.*", "orders.eu.x", false},
		{"orders.>", "orders.eu.x", true},
		{"orders.>", "orders.*", true},
		{"orders.>", "orders.>", true},
		{"orders.>", "orders", false},
		{">", "anything.at.all", true},
		{">", ">", true},
		{"*", ">", false},
		{"*.eu", "orders.eu", true},
		{"*.eu", "*.eu", true},
		{"*.eu", "orders.*", false},
	}
	for _, tc := range cases {
		g, err := broker.ParsePattern(tc.grant)
		if err != nil {
			t.Fatalf("grant %q: %v", tc.grant, err)
		}
		w, err := broker.ParsePattern(tc.want)
		if err != nil {
			t.Fatalf("pattern %q: %v", tc.want, err)
		}
		if got := g.Covers(w); got != tc.ok {
			t.Errorf("%q covers %q = %v, want %v", tc.grant, tc.want, got, tc.ok)
		}
	}
}

// FuzzCovers checks Covers against Match: a grant that covers a pattern
// must match every topic the pattern matches.
func FuzzCovers(f *testing.F) {
	for _, s := range [][3]string{
		{"orders.*", "orders.eu", "orders.eu"},
		{"orders.>", "orders.*.x", "orders.a.x"},
		{"*.eu", "orders.eu", "orders.eu"},
		{">", "a.>", "a.b.c"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, grant, want, topic string) {
		g, err1 := broker.ParsePattern(grant)
		w, err2 := broker.ParsePattern(want)
		if err1 != nil || err2 != nil || broker.ValidateTopic(topic) != nil {
			return
		}
		if g.Covers(w) && w.Match(topic) && !g.Match(topic) {
			t.Fatalf("%q covers %q, which matches %q, but %q does not", grant, want, topic, grant)
		}
		if w.Literal() && g.Match(want) != g.Covers(w) {
			t.Fatalf("for the topic %q, Covers (%v) and Match (%v) of %q disagree", want, g.Covers(w), g.Match(want), grant)
		}
	})
}
