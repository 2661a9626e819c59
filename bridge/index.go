package bridge

import "strings"

// A subIndex finds the subscribers of a topic: those of literal patterns
// by a map lookup, those of wildcard patterns by walking a token trie (as
// nats-server's sublist does), so that finding the subscribers of a topic
// costs in proportion to the tokens of the topic and the patterns that
// match it, never to the patterns that do not. The Hub keeps one for its
// queued subscribers and each shard one for its direct subscribers; their
// owners lock it.
type subIndex struct {
	exact map[string]map[*subscriber]struct{}
	wild  *trieNode // nil until a wildcard pattern is added
}

// A trieNode is one token position of the wildcard patterns. The patterns
// that end at it are in subs; those that end in ">" after it are in rest.
type trieNode struct {
	lit  map[string]*trieNode // the next token, a literal
	star *trieNode            // the next token, "*"
	subs map[*subscriber]struct{}
	rest map[*subscriber]struct{} // ">": one or more tokens more
}

func newSubIndex() subIndex {
	return subIndex{exact: make(map[string]map[*subscriber]struct{})}
}

// add indexes s under each of its patterns.
func (x *subIndex) add(s *subscriber) {
	for _, p := range s.patterns {
		if p.Literal() {
			set := x.exact[p.String()]
			if set == nil {
				set = make(map[*subscriber]struct{})
				x.exact[p.String()] = set
			}
			set[s] = struct{}{}
			continue
		}
		if x.wild == nil {
			x.wild = &trieNode{}
		}
		set := x.wild.leaf(p.String())
		if *set == nil {
			*set = make(map[*subscriber]struct{})
		}
		(*set)[s] = struct{}{}
	}
}

// remove undoes add.
func (x *subIndex) remove(s *subscriber) {
	for _, p := range s.patterns {
		if p.Literal() {
			if set := x.exact[p.String()]; set != nil {
				delete(set, s)
				if len(set) == 0 {
					delete(x.exact, p.String())
				}
			}
			continue
		}
		if x.wild != nil && x.wild.drop(p.String(), s) {
			x.wild = nil
		}
	}
}

// each calls f for every subscriber of topic, once for each of its
// patterns that matches: f skips the repeats (subscriber.lastSeq).
func (x *subIndex) each(topic string, f func(*subscriber)) {
	for s := range x.exact[topic] {
		f(s)
	}
	if x.wild != nil {
		x.wild.match(topic, func(set map[*subscriber]struct{}) {
			for s := range set {
				f(s)
			}
		})
	}
}

// count returns how many subscriptions of patterns match topic: an upper
// bound of its subscribers.
func (x *subIndex) count(topic string) int {
	n := len(x.exact[topic])
	if x.wild != nil {
		x.wild.match(topic, func(set map[*subscriber]struct{}) { n += len(set) })
	}
	return n
}

// leaf returns the set of the subscribers of pattern, a wildcard pattern,
// creating the nodes on its way.
func (n *trieNode) leaf(pattern string) *map[*subscriber]struct{} {
	for {
		tok, more, found := strings.Cut(pattern, ".")
		switch {
		case tok == ">":
			return &n.rest
		case tok == "*":
			if n.star == nil {
				n.star = &trieNode{}
			}
			n = n.star
		default:
			next := n.lit[tok]
			if next == nil {
				if n.lit == nil {
					n.lit = make(map[string]*trieNode)
				}
				next = &trieNode{}
				n.lit[tok] = next
			}
			n = next
		}
		if !found {
			return &n.subs
		}
		pattern = more
	}
}

// drop removes s from the subscribers of pattern and prunes the nodes left
// empty. It reports whether n itself is left empty.
func (n *trieNode) drop(pattern string, s *subscriber) bool {
	tok, more, found := strings.Cut(pattern, ".")
	var child **trieNode
	switch tok {
	case ">":
		delete(n.rest, s)
		if len(n.rest) == 0 {
			n.rest = nil
		}
		return n.empty()
	case "*":
		child = &n.star
	default:
		next := n.lit[tok]
		if next == nil {
			return n.empty()
		}
		child = &next
	}
	c := *child
	if c == nil {
		return n.empty()
	}
	var gone bool
	if found {
		gone = c.drop(more, s)
	} else {
		delete(c.subs, s)
		if len(c.subs) == 0 {
			c.subs = nil
		}
		gone = c.empty()
	}
	if gone {
		if tok == "*" {
			n.star = nil
		} else {
			delete(n.lit, tok)
		}
	}
	return n.empty()
}

func (n *trieNode) empty() bool {
	return len(n.lit) == 0 && n.star == nil && len(n.subs) == 0 && len(n.rest) == 0
}

// match calls f with every set of subscribers whose pattern matches topic.
func (n *trieNode) match(topic string, f func(map[*subscriber]struct{})) {
	tok, more, found := strings.Cut(topic, ".")
	if len(n.rest) > 0 {
		f(n.rest) // ">" takes this token and any after it
	}
	if next := n.lit[tok]; next != nil {
		next.matchNext(more, found, f)
	}
	if n.star != nil {
		n.star.matchNext(more, found, f)
	}
}

// matchNext goes on matching at n after a token of the topic: with the
// rest of the topic if found, or at the topic's end.
func (n *trieNode) matchNext(rest string, found bool, f func(map[*subscriber]struct{})) {
	if found {
		n.match(rest, f)
	} else if len(n.subs) > 0 {
		f(n.subs)
	}
}
