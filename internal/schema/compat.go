package schema

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// compatibility lists every way in which next breaks the JSON form of the
// messages old (those that a change replaced): a message or field that
// disappears, a field number that changes name, JSON name, type or
// cardinality, or an enum value that changes name. New messages, fields
// and enum values are fine.
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
