package bridge

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/broker"
)

func patterns(t testing.TB, texts ...string) []broker.Pattern {
	t.Helper()
	out := make([]broker.Pattern, len(texts))
	for i, text := range texts {
		p, err := broker.ParsePattern(text)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = p
	}
	return out
}

// matched lists the subscribers x finds for topic, once per matching
// pattern, by the index of each in subs.
func matched(x *subIndex, subs []*subscriber, topic string) []int {
	var out []int
	x.each(topic, func(s *subscriber) { out = append(out, slices.Index(subs, s)) })
	slices.Sort(out)
	return out
}

// want lists what matched should: subscriber i once for each of its
// patterns that Pattern.Match accepts.
func want(subs []*subscriber, topic string) []int {
	var out []int
	for i, s := range subs {
		seen := map[string]bool{}
		for _, p := range s.patterns {
			if p.Match(topic) && !seen[p.String()] {
				seen[p.String()] = true
				out = append(out, i)
			}
		}
	}
	return out
}

// TestSubIndexMatchesAsPatternsDo: the trie finds exactly the subscribers
// whose patterns match, as subscribers come and go, and is empty again when
// the last wildcard subscriber has gone.
func TestSubIndexMatchesAsPatternsDo(t *testing.T) {
	tokens := []string{"a", "b", "c", "*", ">"}
	rng := rand.New(rand.NewPCG(1, 2))
	randomPattern := func() string {
		n := 1 + rng.IntN(4)
		parts := make([]string, n)
		for i := range parts {
			tok := tokens[rng.IntN(len(tokens))]
			if tok == ">" && i < n-1 {
				tok = "*"
			}
			parts[i] = tok
		}
		return strings.Join(parts, ".")
	}
	var topics []string
	var gen func(prefix string, depth int)
	gen = func(prefix string, depth int) {
		for _, tok := range tokens[:3] {
			topic := tok
			if prefix != "" {
				topic = prefix + "." + tok
			}
			topics = append(topics, topic)
			if depth < 4 {
				gen(topic, depth+1)
			}
		}
	}
	gen("", 1)

	x := newSubIndex()
	var subs []*subscriber
	check := func(step string) {
		t.Helper()
		for _, topic := range topics {
			got, w := matched(&x, subs, topic), want(subs, topic)
			if !slices.Equal(got, w) {
				t.Fatalf("%s: topic %s: the index finds subscribers %v, the patterns %v", step, topic, got, w)
			}
			if n := x.count(topic); n != len(w) {
				t.Fatalf("%s: topic %s: count %d, want %d", step, topic, n, len(w))
			}
		}
	}
	for i := range 200 {
		n := 1 + rng.IntN(3)
		texts := make([]string, n)
		for j := range texts {
			texts[j] = randomPattern()
		}
		s := &subscriber{patterns: patterns(t, texts...)}
		x.add(s)
		subs = append(subs, s)
		if i%3 == 2 {
			k := rng.IntN(len(subs))
			x.remove(subs[k])
			subs = slices.Delete(subs, k, k+1)
		}
		if i%20 == 0 {
			check(fmt.Sprintf("after %d subscribers came", i+1))
		}
	}
	check("all added")
	for len(subs) > 0 {
		k := rng.IntN(len(subs))
		x.remove(subs[k])
		subs = slices.Delete(subs, k, k+1)
		if len(subs)%25 == 0 {
			check(fmt.Sprintf("with %d subscribers left", len(subs)))
		}
	}
	if x.wild != nil || len(x.exact) != 0 {
		t.Fatalf("the index holds nodes after every subscriber has gone: wild %+v, exact %v", x.wild, x.exact)
	}
}

// BenchmarkSubIndexWildcards matches an event's topic against an index of
// N wildcard subscriptions of which one matches: the cost must not grow
// with the ones that do not.
func BenchmarkSubIndexWildcards(b *testing.B) {
	for _, n := range []int{10, 10_000} {
		b.Run(fmt.Sprintf("patterns=%d", n), func(b *testing.B) {
			x := newSubIndex()
			for i := range n {
				x.add(&subscriber{patterns: patterns(b, fmt.Sprintf("games.g%05d.*", i), fmt.Sprintf("servers.s%05d.>", i))})
			}
			topic := fmt.Sprintf("games.g%05d.score", n/2)
			found := 0
			f := func(*subscriber) { found++ }
			b.ReportAllocs()
			for b.Loop() {
				x.each(topic, f)
			}
			if found != b.N {
				b.Fatalf("found %d subscribers in %d matches, want one each", found, b.N)
			}
		})
	}
}
