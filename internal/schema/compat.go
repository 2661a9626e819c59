package schema

import (
	"fmt"
	"slices"
	"strings"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// compatibility lists every way in which next breaks the messages old
// (those that a change replaced) for their publishers or subscribers: a
// message or field that disappears, a field number that changes name, JSON
// name, type or cardinality, an enum value that changes name, or
// buf.validate constraints that change on a message, a oneof or a field
// that was there (a publish valid before could be refused after, or a
// subscriber could get what it was promised it would not). New messages,
// fields (constraints included) and enum values are fine.
func compatibility(old []protoreflect.MessageDescriptor, next *snapshot) []string {
	old = slices.Clone(old)
	slices.SortFunc(old, func(a, b protoreflect.MessageDescriptor) int {
		return strings.Compare(string(a.FullName()), string(b.FullName()))
	})
	var conflicts []string
	for _, oldM := range old {
		name := oldM.FullName()
		newD, err := next.FindDescriptorByName(name)
		if err != nil {
			conflicts = append(conflicts, fmt.Sprintf("message %s was removed", name))
			continue
		}
		newM, ok := newD.(protoreflect.MessageDescriptor)
		if !ok {
			conflicts = append(conflicts, fmt.Sprintf("%s is no longer a message", name))
			continue
		}
		if oldM == newM {
			continue
		}
		conflicts = append(conflicts, compareMessages(oldM, newM)...)
	}
	return conflicts
}

func compareMessages(oldM, newM protoreflect.MessageDescriptor) []string {
	var out []string
	oldFields, newFields := oldM.Fields(), newM.Fields()
	for i := range oldFields.Len() {
		of := oldFields.Get(i)
		nf := newFields.ByNumber(of.Number())
		where := fmt.Sprintf("%s field %d (%s)", oldM.FullName(), of.Number(), of.Name())
		if nf == nil {
			out = append(out, where+" was removed")
			continue
		}
		if nf.Name() != of.Name() {
			out = append(out, fmt.Sprintf("%s was renamed to %s", where, nf.Name()))
		}
		if nf.JSONName() != of.JSONName() {
			out = append(out, fmt.Sprintf("%s changed its JSON name from %q to %q", where, of.JSONName(), nf.JSONName()))
		}
		if a, b := typeName(of), typeName(nf); a != b {
			out = append(out, fmt.Sprintf("%s changed type from %s to %s", where, a, b))
		}
		if of.Enum() != nil && nf.Enum() != nil {
			out = append(out, compareEnums(of.Enum(), nf.Enum())...)
		}
		if a, b := fieldRules(of), fieldRules(nf); !proto.Equal(a, b) {
			out = append(out, fmt.Sprintf("%s changed its buf.validate constraints from %s to %s", where, describeRules(a), describeRules(b)))
		}
	}
	if a, b := messageRules(oldM), messageRules(newM); !proto.Equal(a, b) {
		out = append(out, fmt.Sprintf("%s changed its buf.validate message constraints from %s to %s", oldM.FullName(), describeRules(a), describeRules(b)))
	}
	oldOneofs := oldM.Oneofs()
	for i := range oldOneofs.Len() {
		oo := oldOneofs.Get(i)
		no := newM.Oneofs().ByName(oo.Name())
		if no == nil {
			continue
		}
		if a, b := oneofRules(oo), oneofRules(no); !proto.Equal(a, b) {
			out = append(out, fmt.Sprintf("%s oneof %s changed its buf.validate constraints from %s to %s", oldM.FullName(), oo.Name(), describeRules(a), describeRules(b)))
		}
	}
	for i := range newFields.Len() {
		nf := newFields.Get(i)
		if of := oldFields.ByName(nf.Name()); of != nil && of.Number() != nf.Number() {
			out = append(out, fmt.Sprintf("%s field %s moved from number %d to %d", oldM.FullName(), nf.Name(), of.Number(), nf.Number()))
		}
	}
	return out
}

func compareEnums(oldE, newE protoreflect.EnumDescriptor) []string {
	var out []string
	oldV, newV := oldE.Values(), newE.Values()
	for i := range oldV.Len() {
		ov := oldV.Get(i)
		nv := newV.ByNumber(ov.Number())
		switch {
		case nv == nil:
			out = append(out, fmt.Sprintf("enum %s value %s (%d) was removed", oldE.FullName(), ov.Name(), ov.Number()))
		case nv.Name() != ov.Name():
			out = append(out, fmt.Sprintf("enum %s value %d was renamed from %s to %s", oldE.FullName(), ov.Number(), ov.Name(), nv.Name()))
		}
	}
	return out
}

// typeName describes a field's type as its JSON form depends on it.
func typeName(fd protoreflect.FieldDescriptor) string {
	var t string
	switch {
	case fd.IsMap():
		return "map<" + typeName(fd.MapKey()) + ", " + typeName(fd.MapValue()) + ">"
	case fd.Message() != nil:
		t = string(fd.Message().FullName())
	case fd.Enum() != nil:
		t = string(fd.Enum().FullName())
	default:
		t = fd.Kind().String()
	}
	if fd.IsList() {
		t = "repeated " + t
	}
	return t
}

// fieldRules, messageRules and oneofRules are the buf.validate options of
// a descriptor, nil for none. Options that cannot be read as such are
// compared whole.
func fieldRules(fd protoreflect.FieldDescriptor) proto.Message {
	return rulesOr(protovalidate.ResolveFieldRules(fd))(fd.Options())
}

func messageRules(md protoreflect.MessageDescriptor) proto.Message {
	return rulesOr(protovalidate.ResolveMessageRules(md))(md.Options())
}

func oneofRules(od protoreflect.OneofDescriptor) proto.Message {
	return rulesOr(protovalidate.ResolveOneofRules(od))(od.Options())
}

func rulesOr[M proto.Message](rules M, err error) func(options proto.Message) proto.Message {
	return func(options proto.Message) proto.Message {
		if err != nil {
			return options
		}
		if !rules.ProtoReflect().IsValid() {
			return nil
		}
		return rules
	}
}

// describeRules writes constraints on one line, as in a .proto file's
// options.
func describeRules(m proto.Message) string {
	if m == nil {
		return "none"
	}
	return "[" + prototext.MarshalOptions{}.Format(m) + "]"
}
