package broker_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/heraldhq/herald/internal/broker"
)

func TestValidateTopic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		topic   string
		wantErr string // substring of the message; "" for a valid topic
	}{
		{"orders", ""},
		{"orders.eu", ""},
		{"a-b_c.D9", ""},
		{"_.-.0", ""},
		{strings.Repeat("a", broker.MaxTopicLen), ""},
		{strings.Repeat("a.", broker.MaxTopicLen/2-1) + "aa", ""},
		{"", "topic is empty"},
		{".", "empty token"},
		{"a..b", "empty token"},
		{"a.", "empty token"},
		{".a", "empty token"},
		{"a b", `" " at byte 1`},
		{"a/b", `"/" at byte 1`},
		{"a*", `"*" at byte 1`},
		{"*", `"*" at byte 0`},
		{"orders.>", `">" at byte 7`},
		{"orders.eu\n", `"\n" at byte 9`},
		{"café", "at byte 3"},
		{strings.Repeat("a", broker.MaxTopicLen+1), "257 bytes, longer than the 256-byte limit"},
	}
	for _, tt := range tests {
		err := broker.ValidateTopic(tt.topic)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("ValidateTopic(%q) = %v, want nil", tt.topic, err)
			}
			continue
		}
		checkTopicError(t, err, tt.wantErr)
	}
}

func TestParsePattern(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern string
		literal bool
		wantErr string
	}{
		{pattern: "orders", literal: true},
		{pattern: "orders.eu", literal: true},
		{pattern: "orders.*"},
		{pattern: "*"},
		{pattern: ">"},
		{pattern: "*.*"},
		{pattern: "a.*.c"},
		{pattern: "*.b.>"},
		{pattern: "monitoring.>"},
		{pattern: "", wantErr: "empty"},
		{pattern: "a..*", wantErr: "empty token"},
		{pattern: "a.*.", wantErr: "empty token"},
		{pattern: "a*", wantErr: `"*" at byte 1`},
		{pattern: "*a", wantErr: `"*" at byte 0`},
		{pattern: "**", wantErr: `"*" at byte 0`},
		{pattern: "a>", wantErr: `">" at byte 1`},
		{pattern: "a.>>", wantErr: `">" at byte 2`},
		{pattern: "a.>.b", wantErr: `">" before its last token`},
		{pattern: ">.>", wantErr: `">" before its last token`},
		{pattern: ">.a", wantErr: `">" before its last token`},
		{pattern: "a b.*", wantErr: "topic pattern"},
		{pattern: strings.Repeat("*.", broker.MaxTopicLen/2) + ">", wantErr: "longer than"},
	}
	for _, tt := range tests {
		p, err := broker.ParsePattern(tt.pattern)
		if tt.wantErr != "" {
			checkTopicError(t, err, tt.wantErr)
			continue
		}
		if err != nil {
			t.Errorf("ParsePattern(%q) = %v", tt.pattern, err)
			continue
		}
		if p.String() != tt.pattern || p.Literal() != tt.literal {
			t.Errorf("ParsePattern(%q): String %q, Literal %v; want %q, %v", tt.pattern, p.String(), p.Literal(), tt.pattern, tt.literal)
		}
	}
}

func TestPatternMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern string
		match   []string
		noMatch []string
	}{
		{"orders", []string{"orders"}, []string{"order", "ordersx", "orders.eu", "x.orders"}},
		{"orders.*", []string{"orders.eu", "orders.us"}, []string{"orders", "orders.eu.north", "order.eu", "ordersx.eu", "x.orders.eu"}},
		{"monitoring.>", []string{"monitoring.eu", "monitoring.eu.game-1"}, []string{"monitoring", "monitor.eu", "monitoringx.eu", "x.monitoring.eu"}},
		{"*", []string{"a", "orders"}, []string{"a.b"}},
		{">", []string{"a", "a.b", "a.b.c"}, nil},
		{"*.*", []string{"a.b"}, []string{"a", "a.b.c"}},
		{"*.>", []string{"a.b", "a.b.c"}, []string{"a"}},
		{"a.*.c", []string{"a.b.c", "a.x.c"}, []string{"a.c", "a.b.d", "a.b.c.d", "b.b.c"}},
		{"*.b.>", []string{"a.b.c", "x.b.c.d"}, []string{"a.b", "b.c.d", "a.c.b.d", "a.bb.c"}},
	}
	for _, tt := range tests {
		p := mustPattern(t, tt.pattern)
		for _, topic := range tt.match {
			if !p.Match(topic) {
				t.Errorf("%q should match %q", tt.pattern, topic)
			}
		}
		for _, topic := range tt.noMatch {
			if p.Match(topic) {
				t.Errorf("%q should not match %q", tt.pattern, topic)
			}
		}
	}
}

func TestMatchAny(t *testing.T) {
	t.Parallel()
	ps := []broker.Pattern{mustPattern(t, "orders.*"), mustPattern(t, "billing")}
	for topic, want := range map[string]bool{
		"orders.eu": true, "billing": true, "billing.eu": false, "orders": false,
	} {
		if got := broker.MatchAny(ps, topic); got != want {
			t.Errorf("MatchAny(%v, %q) = %v, want %v", ps, topic, got, want)
		}
	}
	if broker.MatchAny(nil, "orders") {
		t.Error("no patterns matched a topic")
	}
}

func FuzzValidateTopic(f *testing.F) {
	for _, s := range []string{"orders", "orders.eu", "a-b_c.D9", "a.b.c.d", "a..b", "a.", "*", "orders.>", "café", "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := broker.ValidateTopic(s)
		if err != nil {
			checkTopicError(t, err, "")
			if _, perr := broker.ParsePattern(s); perr == nil && !strings.ContainsAny(s, "*>") {
				t.Fatalf("ParsePattern accepts %q but ValidateTopic does not: %v", s, err)
			}
			return
		}
		p, err := broker.ParsePattern(s)
		if err != nil || !p.Literal() || !p.Match(s) {
			t.Fatalf("valid topic %q: ParsePattern = %v, %v; Literal %v; matches itself %v", s, p, err, p.Literal(), p.Match(s))
		}
		if !mustPattern(t, ">").Match(s) {
			t.Fatalf("> does not match %q", s)
		}
		tokens := strings.Split(s, ".")
		for i := range tokens {
			// One token replaced by "*" matches s, but not s one token longer.
			star := strings.Join(append(append(tokens[:i:i], "*"), tokens[i+1:]...), ".")
			if p := mustPattern(t, star); !p.Match(s) || p.Match(s+".x") {
				t.Fatalf("%q: Match(%q) = %v, Match(%q) = %v; want true, false", star, s, p.Match(s), s+".x", p.Match(s+".x"))
			}
			// The first i tokens and ">" match s if something follows them.
			if i > 0 {
				prefix := strings.Join(tokens[:i], ".")
				if p := mustPattern(t, prefix+".>"); !p.Match(s) || p.Match(prefix) {
					t.Fatalf("%q: Match(%q) = %v, Match(%q) = %v; want true, false", p, s, p.Match(s), prefix, p.Match(prefix))
				}
			}
		}
	})
}

func FuzzParsePattern(f *testing.F) {
	for _, s := range []string{"orders", "orders.*", "*", ">", "*.b.>", "a.>.b", "a*", ">.a", "a..*", "**"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := broker.ParsePattern(s)
		if err != nil {
			checkTopicError(t, err, "")
			return
		}
		wild := strings.ContainsAny(s, "*>")
		if p.String() != s || p.Literal() == wild {
			t.Fatalf("ParsePattern(%q): String %q, Literal %v", s, p.String(), p.Literal())
		}
		if !wild {
			if err := broker.ValidateTopic(s); err != nil {
				t.Fatalf("ParsePattern accepts %q without wildcards but ValidateTopic says %v", s, err)
			}
		}
	})
}

// FuzzPatternMatch checks Match against a plain recursive matcher.
func FuzzPatternMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"orders.*", "orders.eu"}, {"monitoring.>", "monitoring.eu.game-1"}, {"*.b.>", "a.b"},
		{"a.*.c", "a.b.c"}, {">", "a"}, {"*", "a.b"}, {"orders", "orders"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, topic string) {
		p, err := broker.ParsePattern(pattern)
		if err != nil {
			return
		}
		got := p.Match(topic) // must not panic, whatever the topic
		if broker.ValidateTopic(topic) != nil {
			return
		}
		if want := refMatch(strings.Split(pattern, "."), strings.Split(topic, ".")); got != want {
			t.Fatalf("%q.Match(%q) = %v, want %v", pattern, topic, got, want)
		}
	})
}

func refMatch(pattern, topic []string) bool {
	switch {
	case len(pattern) == 0:
		return len(topic) == 0
	case len(topic) == 0:
		return false
	case pattern[0] == ">":
		return true
	case pattern[0] == "*" || pattern[0] == topic[0]:
		return refMatch(pattern[1:], topic[1:])
	}
	return false
}

func mustPattern(tb testing.TB, s string) broker.Pattern {
	tb.Helper()
	p, err := broker.ParsePattern(s)
	if err != nil {
		tb.Fatalf("ParsePattern(%q): %v", s, err)
	}
	return p
}

// checkTopicError checks that err wraps ErrInvalidTopic and has a one-line,
// bounded message containing want.
func checkTopicError(tb testing.TB, err error, want string) {
	tb.Helper()
	if !errors.Is(err, broker.ErrInvalidTopic) {
		tb.Fatalf("error %v, want one wrapping ErrInvalidTopic", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, want) {
		tb.Errorf("error %q does not say %q", msg, want)
	}
	if strings.ContainsAny(msg, "\r\n") || !utf8.ValidString(msg) || len(msg) > 4096 {
		tb.Errorf("error message is not one bounded line of UTF-8: %q", msg)
	}
}
