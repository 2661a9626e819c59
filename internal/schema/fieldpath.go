package schema

import (
	"iter"
	"slices"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// HasFieldPath reports whether some known message type has the field path
// segments (FieldMask semantics, as a subscription's fields= parameter
// takes it): each segment names a field by its proto or JSON name, and
// every segment but the last a singular message field. It implements
// bridge.FieldPathChecker.
//
// Its cost does not grow with the number of known types: the first
// segment is looked up in an index of every field name, built once per
// snapshot on first use; the rest of the path in the first few of the
// distinct types that fields of that name hold, and if it is not found
// there, in an index of their fields, built on first use too, and so on
// (a bounded number of such indexes per snapshot; past that bound, the
// types are looked at one by one).
func (r *Registry) HasFieldPath(segments []string) bool {
	if len(segments) == 0 {
		return false
	}
	s := r.cur.Load()
	keys := s.fields.get(func() fieldKeys {
		return indexFields(func(yield func(protoreflect.MessageDescriptor) bool) {
			for _, mt := range s.messages.all() {
				if !yield(mt.Descriptor()) {
					return
				}
			}
		})
	})
	for i, seg := range segments {
		st := keys[seg]
		switch {
		case st == nil:
			return false
		case i == len(segments)-1:
			return true
		case len(st.held) == 0:
			return false
		}
		if !st.built.Load() {
			// Most paths that exist are found in the first few types;
			// an index of them all is built only for one that is not.
			for _, md := range st.held[:min(len(st.held), probeHeld)] {
				if hasPath(md, segments[i+1:]) {
					return true
				}
			}
			if len(st.held) <= probeHeld {
				return false
			}
			st.once.Do(func() {
				if s.fieldSteps.Add(1) <= maxFieldSteps {
					st.next = indexFields(slices.Values(st.held))
				}
				st.built.Store(true)
			})
		}
		if st.next == nil {
			for _, md := range st.held {
				if hasPath(md, segments[i+1:]) {
					return true
				}
			}
			return false
		}
		keys = st.next
	}
	return false
}

// maxFieldSteps bounds the indexes of later segments built per snapshot:
// paths are chosen by subscribers. probeHeld is how many of the types a
// segment leads to are looked at before an index of them is built.
const (
	maxFieldSteps = 256
	probeHeld     = 16
)

// fieldKeys indexes the fields of a set of message types by the names a
// path may use for them: a field's proto name, and its JSON name where its
// message has no field of that proto name (so that a name leads to the
// field that resolving it in that message would find).
type fieldKeys map[string]*fieldStep

// fieldStep is where a field name leads from a set of message types.
type fieldStep struct {
	// held are the distinct message types held by the singular, non-map
	// message fields of that name: where a path may go on.
	held  []protoreflect.MessageDescriptor
	once  sync.Once
	built atomic.Bool // once has run: next is final
	next  fieldKeys   // the fields of held; nil until built, or if over the bound
}

func indexFields(msgs iter.Seq[protoreflect.MessageDescriptor]) fieldKeys {
	keys := fieldKeys{}
	seen := map[*fieldStep]map[protoreflect.FullName]bool{}
	add := func(name string, f protoreflect.FieldDescriptor) {
		st := keys[name]
		if st == nil {
			st = &fieldStep{}
			keys[name] = st
		}
		if f.Message() == nil || f.IsList() || f.IsMap() {
			return
		}
		if seen[st] == nil {
			seen[st] = map[protoreflect.FullName]bool{}
		}
		if m := f.Message(); !seen[st][m.FullName()] {
			seen[st][m.FullName()] = true
			st.held = append(st.held, m)
		}
	}
	for md := range msgs {
		fields := md.Fields()
		for i := range fields.Len() {
			f := fields.Get(i)
			add(string(f.Name()), f)
			if j := f.JSONName(); j != string(f.Name()) && fields.ByName(protoreflect.Name(j)) == nil && fields.ByJSONName(j) == f {
				add(j, f)
			}
		}
	}
	return keys
}

// hasPath reports whether md has the field path segs.
func hasPath(md protoreflect.MessageDescriptor, segs []string) bool {
	for i, seg := range segs {
		f := md.Fields().ByName(protoreflect.Name(seg))
		if f == nil {
			f = md.Fields().ByJSONName(seg)
		}
		if f == nil {
			return false
		}
		if i < len(segs)-1 {
			if f.Message() == nil || f.IsList() || f.IsMap() {
				return false
			}
			md = f.Message()
		}
	}
	return true
}
