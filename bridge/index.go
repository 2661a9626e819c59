package bridge

import "github.com/heraldhq/herald/internal/broker"

// A subIndex finds the subscribers of a topic: those of literal patterns
// by a map lookup, those of wildcard patterns by matching each distinct
// wildcard pattern once. The Hub keeps one for its queued subscribers and
// each shard one for its direct subscribers; their owners lock it.
type subIndex struct {
	exact map[string]map[*subscriber]struct{}
	wild  map[string]*wildSubs
}

type wildSubs struct {
	pattern broker.Pattern
	subs    map[*subscriber]struct{}
}

func newSubIndex() subIndex {
	return subIndex{exact: make(map[string]map[*subscriber]struct{}), wild: make(map[string]*wildSubs)}
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
		w := x.wild[p.String()]
		if w == nil {
			w = &wildSubs{pattern: p, subs: make(map[*subscriber]struct{})}
			x.wild[p.String()] = w
		}
		w.subs[s] = struct{}{}
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
		if w := x.wild[p.String()]; w != nil {
			delete(w.subs, s)
			if len(w.subs) == 0 {
				delete(x.wild, p.String())
			}
		}
	}
}

// each calls f for every subscriber of topic, once for each of its
// patterns that matches: f skips the repeats (subscriber.lastSeq).
func (x *subIndex) each(topic string, f func(*subscriber)) {
	for s := range x.exact[topic] {
		f(s)
	}
	for _, w := range x.wild {
		if w.pattern.Match(topic) {
			for s := range w.subs {
				f(s)
			}
		}
	}
}

// count returns how many subscriptions of patterns match topic: an upper
// bound of its subscribers.
func (x *subIndex) count(topic string) int {
	n := len(x.exact[topic])
	for _, w := range x.wild {
		if w.pattern.Match(topic) {
			n += len(w.subs)
		}
	}
	return n
}
