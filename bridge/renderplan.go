package bridge

import (
	"math"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// A renderPlan tells, for one message type, whether protojson can fail to
// render a message of that type that decoded and validated, and how to find
// out more cheaply than by rendering it. protojson.Marshal refuses, after a
// successful strict unmarshal:
//
//   - a google.protobuf.Timestamp or Duration out of range (checked here);
//   - google.protobuf.Struct, Value and ListValue holding a NaN or
//     infinite number, or a Value with no kind set (checked here);
//   - google.protobuf.Any (its type may not resolve, its value may not
//     parse) and FieldMask (paths without a JSON form);
//   - strings, map keys included, that are not valid UTF-8, which unmarshal
//     lets through in proto2 files and editions files without UTF-8
//     validation;
//   - proto1 MessageSets, and extensions of any kind (whatever the
//     resolver knows at render time), so any message with extension
//     ranges.
//
// (Missing required fields are refused by the unmarshal already; unknown
// fields are not rendered; NaN and infinite floats and unknown enum values
// have a JSON form.) A type that reaches one of the last four kinds is
// rendered to find out; one that reaches only Timestamps, Durations and
// Values has those checked; the rest need nothing.
type renderPlan struct {
	md    protoreflect.MessageDescriptor
	eager bool // rendering is the only check
	// leaf is set for Timestamp and Duration themselves (the range of
	// their seconds and nanos fields) and for Value (a kind is set, and a
	// number is finite; the Struct or ListValue it holds is a check).
	leaf           leafKind
	seconds, nanos protoreflect.FieldDescriptor
	kind           protoreflect.OneofDescriptor // Value's
	number         protoreflect.FieldDescriptor // Value's number_value
	// checks are the fields whose values need a look, for types that
	// reach a Timestamp or Duration.
	checks []fieldCheck
	// wire is set when a payload of the type is checked on the wire, not
	// decoded, at publish (wirecheck.go).
	wire bool
}

type leafKind uint8

const (
	leafNone leafKind = iota
	leafTimestamp
	leafDuration
	leafValue
	// Struct and ListValue in the shape protojson renders: checked
	// through the Values they hold, as any other message's fields.
	leafStruct
	leafList
)

type fieldCheck struct {
	fd  protoreflect.FieldDescriptor // a message field, list of messages, or map to messages
	sub *renderPlan
}

// The ranges protojson renders (encoding/protojson/well_known_types.go).
const (
	minTimestampSeconds = -62135596800 // 0001-01-01T00:00:00Z
	maxTimestampSeconds = 253402300799 // 9999-12-31T23:59:59Z
	maxDurationSeconds  = 315576000000
	maxNanos            = 999999999
)

// renderPlans caches plans by message descriptor: the schema registry
// builds new descriptors whenever it changes, so a descriptor's plan never
// goes stale. renderPlanCount bounds the cache, which is cleared when the
// descriptors of many registrations have piled up in it.
var (
	renderPlans     sync.Map // protoreflect.MessageDescriptor → *renderPlan
	renderPlanCount atomic.Int64
	// lastPlan is the plan planFor returned last: publishers tend to send
	// one type after another, and this spares the map's hashing.
	lastPlan atomic.Pointer[renderPlan]
)

const maxRenderPlans = 4096

// timestampRenders reports whether protojson renders a Timestamp of
// seconds and nanos.
func timestampRenders(s, n int64) bool {
	return minTimestampSeconds <= s && s <= maxTimestampSeconds && 0 <= n && n <= maxNanos
}

// durationRenders reports whether protojson renders a Duration of seconds
// and nanos.
func durationRenders(s, n int64) bool {
	return -maxDurationSeconds <= s && s <= maxDurationSeconds && -maxNanos <= n && n <= maxNanos &&
		!(s > 0 && n < 0) && !(s < 0 && n > 0)
}

// planFor returns md's plan, building and caching it on first use.
func planFor(md protoreflect.MessageDescriptor) *renderPlan {
	if p := lastPlan.Load(); p != nil && p.md == md {
		return p
	}
	if p, ok := renderPlans.Load(md); ok {
		lastPlan.Store(p.(*renderPlan))
		return p.(*renderPlan)
	}
	b := planBuilder{plans: map[protoreflect.MessageDescriptor]*renderPlan{}}
	p := b.plan(md)
	if renderPlanCount.Add(int64(len(b.plans))) > maxRenderPlans {
		renderPlans.Clear()
		renderPlanCount.Store(0)
	}
	for d, dp := range b.plans {
		dp.wire = !dp.eager && plainClosure(d, map[protoreflect.FullName]bool{})
		renderPlans.Store(d, dp)
	}
	return p
}

type planBuilder struct {
	plans map[protoreflect.MessageDescriptor]*renderPlan
}

// plan builds md's plan. Plans of recursive types point at each other.
func (b *planBuilder) plan(md protoreflect.MessageDescriptor) *renderPlan {
	if p := b.plans[md]; p != nil {
		return p
	}
	p := &renderPlan{md: md}
	b.plans[md] = p
	eager, check := reaches(md)
	switch {
	case eager:
		p.eager = true
		return p
	case !check:
		return p
	}
	switch leaf := wellKnownLeaf(md); leaf {
	case leafTimestamp, leafDuration:
		p.leaf = leaf
		p.seconds, p.nanos = md.Fields().ByNumber(1), md.Fields().ByNumber(2)
		return p
	case leafValue:
		p.leaf = leaf
		p.kind, p.number = md.Oneofs().ByName("kind"), md.Fields().ByNumber(2)
	}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		sub := fieldMessage(fd)
		if sub == nil {
			continue
		}
		if _, subCheck := reaches(sub); subCheck {
			p.checks = append(p.checks, fieldCheck{fd: fd, sub: b.plan(sub)})
		}
	}
	return p
}

// reaches reports whether a message of type md can hold a value only
// rendering can vouch for (eager), or a Timestamp or Duration (check).
func reaches(md protoreflect.MessageDescriptor) (eager, check bool) {
	seen := map[protoreflect.MessageDescriptor]bool{}
	var walk func(md protoreflect.MessageDescriptor)
	walk = func(md protoreflect.MessageDescriptor) {
		if eager || seen[md] {
			return
		}
		seen[md] = true
		if md.ExtensionRanges().Len() > 0 {
			eager = true
			return
		}
		if md.FullName().Parent() == "google.protobuf" {
			switch md.Name() {
			case "Any", "FieldMask":
				eager = true
				return
			case "Timestamp", "Duration":
				if wellKnownLeaf(md) == leafNone {
					eager = true // not the shape protojson expects
				}
				check = true
				return
			case "Struct", "Value", "ListValue":
				if wellKnownLeaf(md) == leafNone {
					eager = true // not the shape protojson expects
					return
				}
				check = true // and they hold each other: walked below
			}
		}
		fields := md.Fields()
		for i := range fields.Len() {
			fd := fields.Get(i)
			if fd.IsMap() {
				if k := fd.MapKey(); k.Kind() == protoreflect.StringKind && !enforcesUTF8(k) {
					eager = true
					return
				}
			}
			if fd.Kind() == protoreflect.StringKind && !enforcesUTF8(fd) {
				eager = true
				return
			}
			if fd.IsMap() && fd.MapValue().Kind() == protoreflect.StringKind && !enforcesUTF8(fd.MapValue()) {
				eager = true
				return
			}
			if sub := fieldMessage(fd); sub != nil {
				walk(sub)
			}
		}
	}
	walk(md)
	return eager, check && !eager
}

// wellKnownLeaf tells Timestamp, Duration, Value, Struct and ListValue,
// in the shape protojson renders them, from other messages.
func wellKnownLeaf(md protoreflect.MessageDescriptor) leafKind {
	if md.FullName().Parent() != "google.protobuf" {
		return leafNone
	}
	kind := leafNone
	switch md.Name() {
	case "Timestamp":
		kind = leafTimestamp
	case "Duration":
		kind = leafDuration
	case "Value", "Struct", "ListValue":
		return structShape(md)
	default:
		return leafNone
	}
	s, n := md.Fields().ByNumber(1), md.Fields().ByNumber(2)
	if s == nil || n == nil || s.Kind() != protoreflect.Int64Kind || n.Kind() != protoreflect.Int32Kind ||
		s.Cardinality() == protoreflect.Repeated || n.Cardinality() == protoreflect.Repeated {
		return leafNone
	}
	return kind
}

// structShape tells whether md, named google.protobuf.Value, Struct or
// ListValue, has the fields of struct.proto, which protojson assumes.
func structShape(md protoreflect.MessageDescriptor) leafKind {
	fields := md.Fields()
	is := func(fd protoreflect.FieldDescriptor, name string, kind protoreflect.Kind) bool {
		return fd != nil && string(fd.Name()) == name && fd.Kind() == kind
	}
	isMsg := func(fd protoreflect.FieldDescriptor, name protoreflect.Name) bool {
		return fd.Kind() == protoreflect.MessageKind && fd.Message().FullName() == protoreflect.FullName("google.protobuf").Append(name)
	}
	switch md.Name() {
	case "Value":
		o := md.Oneofs().ByName("kind")
		if o == nil || fields.Len() != 6 || o.Fields().Len() != 6 {
			return leafNone
		}
		for i, want := range []struct {
			name string
			kind protoreflect.Kind
			msg  protoreflect.Name
		}{
			{"null_value", protoreflect.EnumKind, ""}, {"number_value", protoreflect.DoubleKind, ""},
			{"string_value", protoreflect.StringKind, ""}, {"bool_value", protoreflect.BoolKind, ""},
			{"struct_value", protoreflect.MessageKind, "Struct"}, {"list_value", protoreflect.MessageKind, "ListValue"},
		} {
			fd := fields.ByNumber(protoreflect.FieldNumber(i + 1))
			if !is(fd, want.name, want.kind) || fd.ContainingOneof() != o || (want.msg != "" && !isMsg(fd, want.msg)) {
				return leafNone
			}
		}
		return leafValue
	case "Struct":
		fd := fields.ByNumber(1)
		if fields.Len() != 1 || !is(fd, "fields", protoreflect.MessageKind) || !fd.IsMap() ||
			fd.MapKey().Kind() != protoreflect.StringKind || !enforcesUTF8(fd.MapKey()) || !isMsg(fd.MapValue(), "Value") {
			return leafNone
		}
		return leafStruct
	case "ListValue":
		fd := fields.ByNumber(1)
		if fields.Len() != 1 || !is(fd, "values", protoreflect.MessageKind) || !fd.IsList() || !isMsg(fd, "Value") {
			return leafNone
		}
		return leafList
	}
	return leafNone
}

// fieldMessage is the message type a field holds (its map values for a
// map), or nil.
func fieldMessage(fd protoreflect.FieldDescriptor) protoreflect.MessageDescriptor {
	if fd.IsMap() {
		fd = fd.MapValue()
	}
	if k := fd.Kind(); k == protoreflect.MessageKind || k == protoreflect.GroupKind {
		return fd.Message()
	}
	return nil
}

// enforcesUTF8 reports whether unmarshal refuses invalid UTF-8 in a string
// field, as protobuf's internal strs.EnforceUTF8 decides it.
func enforcesUTF8(fd protoreflect.FieldDescriptor) bool {
	switch fd.Syntax() {
	case protoreflect.Proto3:
		return true
	case protoreflect.Editions:
		e, ok := fd.(interface{ EnforceUTF8() bool })
		return ok && e.EnforceUTF8()
	}
	return false
}

// renders reports whether protojson will render m, of the plan's type,
// without rendering it. false means it may not: render it to find out.
func (p *renderPlan) renders(m protoreflect.Message) bool {
	if md := m.Descriptor(); md != p.md {
		// A field of one type may hold a message built from another
		// descriptor of the same name (a generated Timestamp in a
		// dynamic message): its fields are not the plan's.
		return planFor(md).renders(m)
	}
	if p.eager {
		return false
	}
	switch p.leaf {
	case leafTimestamp:
		return timestampRenders(m.Get(p.seconds).Int(), m.Get(p.nanos).Int())
	case leafDuration:
		return durationRenders(m.Get(p.seconds).Int(), m.Get(p.nanos).Int())
	case leafValue:
		switch fd := m.WhichOneof(p.kind); fd {
		case nil:
			return false // protojson: none of the oneof fields is set
		case p.number:
			f := m.Get(fd).Float()
			return !math.IsNaN(f) && !math.IsInf(f, 0)
		}
		// A Struct or ListValue: the checks below.
	}
	for _, c := range p.checks {
		if !m.Has(c.fd) {
			continue
		}
		v := m.Get(c.fd)
		switch {
		case c.fd.IsList():
			l := v.List()
			for i := range l.Len() {
				if !c.sub.renders(l.Get(i).Message()) {
					return false
				}
			}
		case c.fd.IsMap():
			ok := true
			v.Map().Range(func(_ protoreflect.MapKey, v protoreflect.Value) bool {
				ok = c.sub.renders(v.Message())
				return ok
			})
			if !ok {
				return false
			}
		default:
			if !c.sub.renders(v.Message()) {
				return false
			}
		}
	}
	return true
}
