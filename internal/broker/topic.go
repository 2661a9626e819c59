package broker

import (
	"fmt"
	"strings"
)

// MaxTopicLen is the longest topic name or pattern, in bytes.
const MaxTopicLen = 256

// ValidateTopic reports whether name is a topic events can be published to:
// 1 to MaxTopicLen bytes of dot-separated, non-empty tokens of
// [A-Za-z0-9_-]. The returned error names the problem.
func ValidateTopic(name string) error {
	return validateTopic(name, false)
}

func validateTopic(name string, pattern bool) error {
	if name == "" {
		return fmt.Errorf("%w: topic is empty", ErrInvalidTopic)
	}
	if len(name) > MaxTopicLen {
		return fmt.Errorf("%w: topic is %d bytes, longer than the %d-byte limit", ErrInvalidTopic, len(name), MaxTopicLen)
	}
	start := 0
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != '.' {
			continue
		}
		tok := name[start:i]
		switch {
		case tok == "":
			return fmt.Errorf("%w: topic %q has an empty token (tokens are separated by single dots)", ErrInvalidTopic, Printable(name))
		case pattern && tok == "*":
		case pattern && tok == ">":
			if i != len(name) {
				return fmt.Errorf("%w: pattern %q has \">\" before its last token", ErrInvalidTopic, Printable(name))
			}
		default:
			for j := 0; j < len(tok); j++ {
				if !topicChar(tok[j]) {
					what := "topic"
					if pattern {
						what = "topic pattern"
					}
					return fmt.Errorf("%w: %s %q has %q at byte %d; tokens are made of A-Z a-z 0-9 _ -", ErrInvalidTopic, what, Printable(name), Printable(tok[j:j+1]), start+j)
				}
			}
		}
		start = i + 1
	}
	return nil
}

func topicChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// Printable shortens and cleans a client's input for an error message that
// names it: at most MaxTopicLen+16 bytes, valid UTF-8, so that a message
// stays one readable line whatever the input held (%q then escapes control
// characters).
func Printable(s string) string {
	if len(s) > MaxTopicLen+16 {
		s = s[:MaxTopicLen] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}

// A Pattern selects topics for a subscriber. It is a topic name in which a
// token may be "*" (exactly one token) and the last token may be ">" (one or
// more remaining tokens): "orders.*" matches "orders.eu" but not "orders" or
// "orders.eu.north"; "monitoring.>" matches "monitoring.eu" and
// "monitoring.eu.game-1" but not "monitoring".
type Pattern struct {
	text   string
	tokens []string // nil for a literal topic
}

// ParsePattern parses a topic or topic pattern.
func ParsePattern(s string) (Pattern, error) {
	if err := validateTopic(s, true); err != nil {
		return Pattern{}, err
	}
	p := Pattern{text: s}
	if strings.ContainsAny(s, "*>") {
		p.tokens = strings.Split(s, ".")
	}
	return p, nil
}

// String returns the pattern as it was written.
func (p Pattern) String() string { return p.text }

// Literal reports whether the pattern is a plain topic name with no
// wildcard, matching that one topic only.
func (p Pattern) Literal() bool { return p.tokens == nil }

// Match reports whether topic is selected by the pattern. topic must be a
// valid topic name.
func (p Pattern) Match(topic string) bool {
	if p.tokens == nil {
		return topic == p.text
	}
	for _, tok := range p.tokens {
		if tok == ">" {
			return topic != ""
		}
		if topic == "" {
			return false
		}
		head, rest, _ := strings.Cut(topic, ".")
		if tok != "*" && tok != head {
			return false
		}
		topic = rest
	}
	return topic == ""
}

// MatchAny reports whether any of patterns matches topic.
func MatchAny(patterns []Pattern, topic string) bool {
	for _, p := range patterns {
		if p.Match(topic) {
			return true
		}
	}
	return false
}

// Covers reports whether every topic that q matches is also matched by p:
// a grant of p allows a subscription to q.
func (p Pattern) Covers(q Pattern) bool {
	pt, qt := p.tokens, q.tokens
	if pt == nil {
		pt = strings.Split(p.text, ".")
	}
	if qt == nil {
		qt = strings.Split(q.text, ".")
	}
	for i, tok := range pt {
		if tok == ">" {
			return i < len(qt) // q has at least one token here
		}
		if i >= len(qt) {
			return false
		}
		switch {
		case qt[i] == ">":
			return false // q reaches deeper than p's fixed length
		case tok == "*":
		case tok != qt[i]:
			return false
		}
	}
	return len(pt) == len(qt)
}

// CoveredBy reports whether some pattern of grants covers q.
func CoveredBy(grants []Pattern, q Pattern) bool {
	for _, g := range grants {
		if g.Covers(q) {
			return true
		}
	}
	return false
}
