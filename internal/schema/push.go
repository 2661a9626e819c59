package schema

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/broker"
)

// The checks of a push that come before the registry builds anything.

// checkSet returns the files of a push besides google/protobuf and
// buf/validate ones, refusing a set that holds a path twice.
func (r *Registry) checkSet(set *descriptorpb.FileDescriptorSet) ([]*descriptorpb.FileDescriptorProto, error) {
	seen := map[string]bool{}
	var files []*descriptorpb.FileDescriptorProto
	for _, fd := range set.GetFile() {
		name := fd.GetName()
		if seen[name] {
			return nil, fmt.Errorf("%w: file %s is in the set twice", broker.ErrBadRequest, name)
		}
		seen[name] = true
		if !fixedPath(name) {
			files = append(files, fd)
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: the set holds no files besides google/protobuf and buf/validate ones", broker.ErrInvalidEvent)
	}
	return files, nil
}

// reservedPrefixes are packages that no push may add to or change, nor
// any package below them.
var reservedPrefixes = []string{"herald", "google", "buf"}

// isReserved reports whether a push may not add to or change pkg.
func (r *Registry) isReserved(pkg string) bool {
	for _, p := range reservedPrefixes {
		if pkg == p || strings.HasPrefix(pkg, p+".") {
			return true
		}
	}
	return r.reserved[pkg]
}

// mayChange checks that a caller with perms may replace old (nil for a new
// path) with fd: both packages must be granted and not reserved.
func (r *Registry) mayChange(old *fileEntry, fd *descriptorpb.FileDescriptorProto, perms auth.Permissions) error {
	pkgs := []string{fd.GetPackage()}
	if old != nil && string(old.fd.Package()) != fd.GetPackage() {
		pkgs = append(pkgs, string(old.fd.Package()))
	}
	for _, pkg := range pkgs {
		if r.isReserved(pkg) {
			return fmt.Errorf("%w: %s changes package %s, which is reserved: no push may add or change types in herald.*, google.*, buf.* or the packages compiled into this server", auth.ErrPermissionDenied, fd.GetName(), packageName(pkg))
		}
	}
	for _, pkg := range pkgs {
		if !covers(perms.Schemas, pkg) {
			grants := "none"
			if len(perms.Schemas) > 0 {
				list := make([]string, len(perms.Schemas))
				for i, p := range perms.Schemas {
					list[i] = p.String()
				}
				grants = strings.Join(list, ", ")
			}
			return fmt.Errorf("%w: %s (%s) is in package %s, outside the packages the caller may push (its schemas grant: %s)", auth.ErrPermissionDenied, firstChange(old, fd, pkg), fd.GetName(), packageName(pkg), grants)
		}
	}
	return nil
}

func packageName(pkg string) string {
	if pkg == "" {
		return "(none)"
	}
	return pkg
}

// covers reports whether grants allow pkg. The empty package is allowed
// only by ">", the grant of every package.
func covers(grants []broker.Pattern, pkg string) bool {
	for _, g := range grants {
		if pkg == "" && g.String() == ">" || pkg != "" && g.Match(pkg) {
			return true
		}
	}
	return false
}

// firstChange names the first message or enum of package pkg that fd adds
// or changes relative to old, or else the first that it removes, or else
// the file.
func firstChange(old *fileEntry, fd *descriptorpb.FileDescriptorProto, pkg string) string {
	before := map[string]proto.Message{}
	var order []string
	if old != nil && string(old.fd.Package()) == pkg {
		rangeDefs(old.proto, func(name string, def proto.Message) {
			before[name] = def
			order = append(order, name)
		})
	}
	first := ""
	seen := map[string]bool{}
	if fd.GetPackage() == pkg {
		rangeDefs(fd, func(name string, def proto.Message) {
			seen[name] = true
			if prev, ok := before[name]; first == "" && (!ok || !proto.Equal(prev, def)) {
				first = name
			}
		})
	}
	for _, name := range order {
		if first == "" && !seen[name] {
			first = name
		}
	}
	if first == "" {
		return "file " + fd.GetName()
	}
	return first
}

// rangeDefs calls f for each message and enum of fd with its definition
// (a message's without its nested definitions, which come on their own).
func rangeDefs(fd *descriptorpb.FileDescriptorProto, f func(name string, def proto.Message)) {
	prefix := ""
	if fd.GetPackage() != "" {
		prefix = fd.GetPackage() + "."
	}
	var walk func(prefix string, msgs []*descriptorpb.DescriptorProto, enums []*descriptorpb.EnumDescriptorProto)
	walk = func(prefix string, msgs []*descriptorpb.DescriptorProto, enums []*descriptorpb.EnumDescriptorProto) {
		for _, m := range msgs {
			def := proto.CloneOf(m)
			def.NestedType, def.EnumType = nil, nil
			f(prefix+m.GetName(), def)
			walk(prefix+m.GetName()+".", m.GetNestedType(), m.GetEnumType())
		}
		for _, e := range enums {
			f(prefix+e.GetName(), e)
		}
	}
	walk(prefix, fd.GetMessageType(), fd.GetEnumType())
}

// sameDefinition reports whether a and b define the same things: equal but
// for comments (source info) and JSON names spelled out as their default.
func sameDefinition(a, b *descriptorpb.FileDescriptorProto) bool {
	return proto.Equal(normalized(a), normalized(b))
}

func normalized(fd *descriptorpb.FileDescriptorProto) *descriptorpb.FileDescriptorProto {
	fd = proto.CloneOf(fd)
	fd.SourceCodeInfo = nil
	clear := func(fields []*descriptorpb.FieldDescriptorProto) {
		for _, f := range fields {
			if f.GetJsonName() == jsonCamelCase(f.GetName()) {
				f.JsonName = nil
			}
		}
	}
	var walk func(msgs []*descriptorpb.DescriptorProto)
	walk = func(msgs []*descriptorpb.DescriptorProto) {
		for _, m := range msgs {
			clear(m.GetField())
			clear(m.GetExtension())
			walk(m.GetNestedType())
		}
	}
	walk(fd.GetMessageType())
	clear(fd.GetExtension())
	return fd
}

// jsonCamelCase is the JSON name protoc gives a field by default.
func jsonCamelCase(s string) string {
	var b []byte
	upper := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' {
			upper = true
			continue
		}
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		upper = false
		b = append(b, c)
	}
	return string(b)
}
