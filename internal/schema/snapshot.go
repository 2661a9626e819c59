package schema

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// A snapshot is one state of the registry: its files, the names they
// declare and the message types they hold.
//
// Ownership: a snapshot published in Registry.cur is immutable and read
// without locks. A change is built on a private snapshot (a clone of the
// published one, or a new one) by the goroutine holding Registry.mu, which
// mutates it in place and then publishes it. clone copies the maps, not
// what they hold: values (file entries, descriptors, types, the importers'
// slices) are never mutated once stored; a slice is replaced, not appended
// to in place.
//
// The name index mirrors protoregistry.Files (top-level declarations by
// full name, packages and their prefixes), so that a change is refused for
// exactly the name conflicts that protoregistry would refuse, whether it is
// built on top of the current state or from scratch.
type snapshot struct {
	files     cowMap[string, *fileEntry]                                // by path
	decls     cowMap[protoreflect.FullName, protoreflect.Descriptor]    // top-level declarations
	packages  cowMap[protoreflect.FullName, int]                        // packages and their prefixes → files declaring them
	messages  cowMap[protoreflect.FullName, protoreflect.MessageType]   // payload types: every message but map entries
	extByName cowMap[protoreflect.FullName, protoreflect.ExtensionType] // file-level extensions
	extByNum  cowMap[extKey, protoreflect.ExtensionType]                // the same, by extendee and number
	importers cowMap[string, []string]                                  // path → paths of the files that import it

	pushedTypes int // message types in files of source Pushed
	pushedBytes int // encoded size of the files of source Pushed

	names      lazy[[]string]  // sorted full names of messages
	fields     lazy[fieldKeys] // the index of HasFieldPath (fieldpath.go)
	fieldSteps atomic.Int32    // indexes of later segments built, bounded by maxFieldSteps
}

type extKey struct {
	message protoreflect.FullName
	number  protoreflect.FieldNumber
}

// fileEntry is one file of a snapshot. Immutable.
type fileEntry struct {
	fd    protoreflect.FileDescriptor
	proto *descriptorpb.FileDescriptorProto // as given (source info included): compared with new versions, rebuilt from
	src   Source
	// support: the messages are not payload types (descriptor.proto,
	// buf/validate/validate.proto).
	support bool
	types   int // message types (countTypes)
	size    int // proto.Size(proto)
}

// lazy is a value computed at most once per snapshot, on first use.
type lazy[T any] struct {
	once sync.Once
	v    T
}

func (l *lazy[T]) get(f func() T) T {
	l.once.Do(func() { l.v = f() })
	return l.v
}

func newSnapshot() *snapshot { return new(snapshot) }

// clone returns a private copy of s to build a change on. The copy shares
// what it does not change with s (cowMap), so that a change costs what it
// changes, not the size of the registry.
func (s *snapshot) clone() *snapshot {
	return &snapshot{
		files:       s.files.clone(),
		decls:       s.decls.clone(),
		packages:    s.packages.clone(),
		messages:    s.messages.clone(),
		extByName:   s.extByName.clone(),
		extByNum:    s.extByNum.clone(),
		importers:   s.importers.clone(),
		pushedTypes: s.pushedTypes,
		pushedBytes: s.pushedBytes,
	}
}

// sortedNames returns the full names of the message types, sorted.
func (s *snapshot) sortedNames() []string {
	return s.names.get(func() []string {
		out := make([]string, 0, s.messages.len())
		for n := range s.messages.all() {
			out = append(out, string(n))
		}
		sort.Strings(out)
		return out
	})
}

// info describes a message type of s.
func (s *snapshot) info(mt protoreflect.MessageType) Info {
	md := mt.Descriptor()
	path := md.ParentFile().Path()
	var src Source
	if e := s.files.at(path); e != nil {
		src = e.src
	}
	return Info{Name: string(md.FullName()), File: path, Source: src}
}

// FindFileByPath implements protodesc.Resolver.
func (s *snapshot) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	if e := s.files.at(path); e != nil {
		return e.fd, nil
	}
	return nil, protoregistry.NotFound
}

// FindDescriptorByName implements protodesc.Resolver, as
// protoregistry.Files does: a top-level declaration, or one nested in a
// message or service.
func (s *snapshot) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	for prefix := name; prefix != ""; prefix = prefix.Parent() {
		d, ok := s.decls.get(prefix)
		if !ok {
			if s.packages.at(prefix) > 0 {
				break
			}
			continue
		}
		if d.FullName() == name {
			return d, nil
		}
		if found := findNested(d, strings.Split(string(name[len(prefix)+1:]), ".")); found != nil {
			return found, nil
		}
		break
	}
	return nil, protoregistry.NotFound
}

// findNested finds the descriptor below d named by path, a list of short
// names, as protoregistry.Files does below a top-level declaration.
func findNested(d protoreflect.Descriptor, path []string) protoreflect.Descriptor {
	if svc, ok := d.(protoreflect.ServiceDescriptor); ok {
		if len(path) != 1 {
			return nil
		}
		if m := svc.Methods().ByName(protoreflect.Name(path[0])); m != nil {
			return m
		}
		return nil
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		return nil
	}
	for len(path) > 1 {
		if md = md.Messages().ByName(protoreflect.Name(path[0])); md == nil {
			return nil
		}
		path = path[1:]
	}
	name := protoreflect.Name(path[0])
	if ed := md.Enums().ByName(name); ed != nil {
		return ed
	}
	for i := md.Enums().Len() - 1; i >= 0; i-- {
		if vd := md.Enums().Get(i).Values().ByName(name); vd != nil {
			return vd
		}
	}
	if xd := md.Extensions().ByName(name); xd != nil {
		return xd
	}
	if fd := md.Fields().ByName(name); fd != nil {
		return fd
	}
	if od := md.Oneofs().ByName(name); od != nil {
		return od
	}
	if m := md.Messages().ByName(name); m != nil {
		return m
	}
	return nil
}

// input is one file to put into a snapshot.
type input struct {
	proto *descriptorpb.FileDescriptorProto
	src   Source
	// linked, when set, is a file linked into the binary, used as is,
	// with the generated Go types of its messages (proto is its
	// descriptor proto all the same).
	linked protoreflect.FileDescriptor
	// support: its messages are not payload types.
	support bool
}

func (in input) path() string { return in.proto.GetName() }

// applyOptions tune apply.
type applyOptions struct {
	// noMoves refuses a message declared in a new file when it was
	// declared in another file before, even one the change replaces: a
	// push may not move a type to another file.
	noMoves bool
}

// apply puts files into s, each replacing the file at its path, and
// rebuilds the files that import a replaced one (directly or not): their
// descriptors must refer to the new versions. Only those files are built;
// the rest of s is left as it is. Everything is checked before s is
// changed, so that on error s is as it was.
//
// It returns the message descriptors that the change replaced (those of
// the replaced and rebuilt files), for the compatibility check.
func (s *snapshot) apply(files []input, opts applyOptions) ([]protoreflect.MessageDescriptor, error) {
	given := map[string]bool{}
	set := map[string]input{}
	var order []string
	for _, in := range files {
		p := in.path()
		if given[p] {
			return nil, fmt.Errorf("%w: %q is in the set twice", errInvalidSet, p)
		}
		given[p] = true
		set[p] = in
		order = append(order, p)
	}
	// Files that import a replaced file, transitively, are rebuilt from
	// their own protos.
	removed := map[string]bool{}
	queue := slices.Clone(order)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		e := s.files.at(p)
		if e == nil || removed[p] {
			continue
		}
		removed[p] = true
		if _, ok := set[p]; !ok {
			set[p] = input{proto: e.proto, src: e.src, support: e.support}
			order = append(order, p)
		}
		queue = append(queue, s.importers.at(p)...)
	}
	order, err := importOrder(order, set)
	if err != nil {
		return nil, err
	}

	// Build, each file against the files built before it and those of s
	// that stay.
	local := new(protoregistry.Files)
	res := &overlay{local: local, base: s, removed: removed}
	built := make([]protoreflect.FileDescriptor, len(order))
	for i, p := range order {
		in := set[p]
		fd := in.linked
		if fd == nil {
			if fd, err = protodesc.NewFile(in.proto, res); err != nil {
				return nil, fmt.Errorf("%w: %v", errInvalidSet, err)
			}
		}
		if err := local.RegisterFile(fd); err != nil {
			return nil, fmt.Errorf("%w: %v", errInvalidSet, err)
		}
		built[i] = fd
	}

	// Name conflicts with the files of s that stay, as protoregistry would
	// report them had every file been registered together.
	live := func(d protoreflect.Descriptor) bool { return d != nil && !removed[d.ParentFile().Path()] }
	removedPkgs := map[protoreflect.FullName]int{}
	for p := range removed {
		for n := s.files.at(p).fd.Package(); n != ""; n = n.Parent() {
			removedPkgs[n]++
		}
	}
	isPackage := func(n protoreflect.FullName) bool { return s.packages.at(n)-removedPkgs[n] > 0 }
	var conflicts []string
	exts := map[extKey]protoreflect.ExtensionDescriptor{}
	for _, fd := range built {
		for n := fd.Package(); n != ""; n = n.Parent() {
			if d := s.decls.at(n); live(d) {
				conflicts = append(conflicts, fmt.Sprintf("package %s of %s is the name of a %s in %s", fd.Package(), fd.Path(), kind(d), d.ParentFile().Path()))
			}
		}
		rangeTopLevel(fd, func(d protoreflect.Descriptor) {
			prev := s.decls.at(d.FullName())
			moved := opts.noMoves && given[fd.Path()] && prev != nil && prev.ParentFile().Path() != fd.Path()
			switch {
			case live(prev) || moved:
				conflicts = append(conflicts, fmt.Sprintf("%s is already defined in %s, not %s (push new versions of a file under its own path)", d.FullName(), prev.ParentFile().Path(), fd.Path()))
			case isPackage(d.FullName()):
				conflicts = append(conflicts, fmt.Sprintf("%s in %s is the name of a package", d.FullName(), fd.Path()))
			}
		})
		xs := fd.Extensions()
		for i := range xs.Len() {
			x := xs.Get(i)
			k := extKey{x.ContainingMessage().FullName(), x.Number()}
			if prev, ok := s.extByNum.get(k); ok && live(prev.TypeDescriptor()) {
				conflicts = append(conflicts, fmt.Sprintf("extension %s of %s uses number %d, as %s does", x.FullName(), k.message, k.number, prev.TypeDescriptor().FullName()))
			} else if prev, ok := exts[k]; ok {
				conflicts = append(conflicts, fmt.Sprintf("extension %s of %s uses number %d, as %s does", x.FullName(), k.message, k.number, prev.FullName()))
			}
			exts[k] = x
		}
	}
	if opts.noMoves {
		// A message nested in a new file may not come from another file
		// either (top-level ones were checked above).
		for _, fd := range built {
			if !given[fd.Path()] {
				continue
			}
			rangeMessages(fd.Messages(), func(md protoreflect.MessageDescriptor) {
				if md.Parent() == fd {
					return
				}
				if prev, ok := s.messages.get(md.FullName()); ok && prev.Descriptor().ParentFile().Path() != fd.Path() {
					conflicts = append(conflicts, fmt.Sprintf("%s is already defined in %s, not %s (push new versions of a file under its own path)", md.FullName(), prev.Descriptor().ParentFile().Path(), fd.Path()))
				}
			})
		}
	}
	if len(conflicts) > 0 {
		return nil, &ConflictError{Conflicts: conflicts}
	}

	// Commit.
	var replaced []protoreflect.MessageDescriptor
	for _, p := range order {
		if removed[p] {
			e := s.files.at(p)
			rangeMessages(e.fd.Messages(), func(md protoreflect.MessageDescriptor) { replaced = append(replaced, md) })
			s.remove(p)
		}
	}
	for _, fd := range built {
		s.add(fd, set[fd.Path()])
	}
	return replaced, nil
}

// overlay resolves names during apply: the files built so far first, then
// the files of the base snapshot that the change does not replace.
type overlay struct {
	local   *protoregistry.Files
	base    *snapshot
	removed map[string]bool
}

func (o *overlay) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	if fd, err := o.local.FindFileByPath(path); err == nil {
		return fd, nil
	}
	if o.removed[path] {
		return nil, protoregistry.NotFound
	}
	return o.base.FindFileByPath(path)
}

func (o *overlay) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	if d, err := o.local.FindDescriptorByName(name); err == nil {
		return d, nil
	}
	d, err := o.base.FindDescriptorByName(name)
	if err != nil || o.removed[d.ParentFile().Path()] {
		return nil, protoregistry.NotFound
	}
	return d, nil
}

// importOrder orders paths so that every file comes after those of set
// that it imports.
func importOrder(paths []string, set map[string]input) ([]string, error) {
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	out := make([]string, 0, len(paths))
	var visit func(p string, from []string) error
	visit = func(p string, from []string) error {
		switch state[p] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("%w: import cycle: %s", errInvalidSet, strings.Join(append(from, p), " → "))
		}
		state[p] = visiting
		for _, dep := range set[p].proto.GetDependency() {
			if _, ok := set[dep]; ok {
				if err := visit(dep, append(from, p)); err != nil {
					return err
				}
			}
		}
		state[p] = done
		out = append(out, p)
		return nil
	}
	for _, p := range paths {
		if err := visit(p, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// remove takes the file at path out of s, with everything it declares.
func (s *snapshot) remove(path string) {
	e := s.files.at(path)
	fd := e.fd
	rangeTopLevel(fd, func(d protoreflect.Descriptor) {
		if s.decls.at(d.FullName()) == d {
			s.decls.del(d.FullName())
		}
	})
	for n := fd.Package(); n != ""; n = n.Parent() {
		if c := s.packages.at(n) - 1; c > 0 {
			s.packages.set(n, c)
		} else {
			s.packages.del(n)
		}
	}
	rangeMessages(fd.Messages(), func(md protoreflect.MessageDescriptor) {
		if mt, ok := s.messages.get(md.FullName()); ok && mt.Descriptor().ParentFile().Path() == path {
			s.messages.del(md.FullName())
		}
	})
	xs := fd.Extensions()
	for i := range xs.Len() {
		x := xs.Get(i)
		s.extByName.del(x.FullName())
		s.extByNum.del(extKey{x.ContainingMessage().FullName(), x.Number()})
	}
	imps := fd.Imports()
	for i := range imps.Len() {
		dep := imps.Get(i).Path()
		rest := slices.DeleteFunc(slices.Clone(s.importers.at(dep)), func(p string) bool { return p == path })
		if len(rest) == 0 {
			s.importers.del(dep)
		} else {
			s.importers.set(dep, rest)
		}
	}
	if e.src == Pushed {
		s.pushedTypes -= e.types
		s.pushedBytes -= e.size
	}
	s.files.del(path)
}

// add puts a built file into s. The messages of a linked file use the
// generated Go types.
func (s *snapshot) add(fd protoreflect.FileDescriptor, in input) {
	e := &fileEntry{fd: fd, proto: in.proto, src: in.src, support: in.support}
	e.types, e.size = countTypes(in.proto), proto.Size(in.proto)
	s.files.set(fd.Path(), e)
	rangeTopLevel(fd, func(d protoreflect.Descriptor) { s.decls.set(d.FullName(), d) })
	for n := fd.Package(); n != ""; n = n.Parent() {
		s.packages.set(n, s.packages.at(n)+1)
	}
	if !in.support {
		rangeMessages(fd.Messages(), func(md protoreflect.MessageDescriptor) {
			var mt protoreflect.MessageType = dynamicpb.NewMessageType(md)
			if in.linked != nil {
				if gt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName()); err == nil && gt.Descriptor() == md {
					mt = gt
				}
			}
			s.messages.set(md.FullName(), mt)
		})
		xs := fd.Extensions()
		for i := range xs.Len() {
			xt := dynamicpb.NewExtensionType(xs.Get(i))
			s.extByName.set(xs.Get(i).FullName(), xt)
			s.extByNum.set(extKey{xs.Get(i).ContainingMessage().FullName(), xs.Get(i).Number()}, xt)
		}
	}
	imps := fd.Imports()
	for i := range imps.Len() {
		dep := imps.Get(i).Path()
		s.importers.set(dep, append(slices.Clip(s.importers.at(dep)), fd.Path()))
	}
	if in.src == Pushed {
		s.pushedTypes += e.types
		s.pushedBytes += e.size
	}
}

// rangeTopLevel calls f for the declarations of fd that protoregistry.Files
// indexes by name.
func rangeTopLevel(fd protoreflect.FileDescriptor, f func(protoreflect.Descriptor)) {
	enums := fd.Enums()
	for i := range enums.Len() {
		f(enums.Get(i))
		vals := enums.Get(i).Values()
		for j := range vals.Len() {
			f(vals.Get(j))
		}
	}
	msgs := fd.Messages()
	for i := range msgs.Len() {
		f(msgs.Get(i))
	}
	xs := fd.Extensions()
	for i := range xs.Len() {
		f(xs.Get(i))
	}
	svcs := fd.Services()
	for i := range svcs.Len() {
		f(svcs.Get(i))
	}
}

// rangeMessages calls f for every message in msgs and nested in them,
// except map entries.
func rangeMessages(msgs protoreflect.MessageDescriptors, f func(protoreflect.MessageDescriptor)) {
	for i := range msgs.Len() {
		md := msgs.Get(i)
		if md.IsMapEntry() {
			continue
		}
		f(md)
		rangeMessages(md.Messages(), f)
	}
}

// countTypes counts the message types of a file as rangeMessages would.
func countTypes(fd *descriptorpb.FileDescriptorProto) int {
	var count func(msgs []*descriptorpb.DescriptorProto) int
	count = func(msgs []*descriptorpb.DescriptorProto) int {
		n := 0
		for _, m := range msgs {
			if m.GetOptions().GetMapEntry() {
				continue
			}
			n += 1 + count(m.GetNestedType())
		}
		return n
	}
	return count(fd.GetMessageType())
}

func kind(d protoreflect.Descriptor) string {
	switch d.(type) {
	case protoreflect.MessageDescriptor:
		return "message"
	case protoreflect.EnumDescriptor:
		return "enum"
	case protoreflect.EnumValueDescriptor:
		return "enum value"
	case protoreflect.ExtensionDescriptor:
		return "extension"
	case protoreflect.ServiceDescriptor:
		return "service"
	}
	return "declaration"
}

var errInvalidSet = errors.New("invalid descriptor set")
