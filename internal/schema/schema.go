// Package schema is Herald's registry of payload types: it tells the
// publish path which protobuf messages it may accept, checks payloads
// against their buf.validate constraints, and renders them as JSON.
//
// Types come from three sources, later ones evolving earlier ones:
//
//   - compiled in: the protobuf well-known types, plus the files the binary
//     gives as Options.Compiled (herald serve --demo: the example schemas);
//   - descriptor set files given at start-up (--descriptors), reloaded on
//     Reload (SIGHUP) and when the files change;
//   - descriptor sets pushed at run time (SchemaService.RegisterSchemas),
//     saved in the broker's SchemaStore so that every node learns them.
//
// A .proto file is identified by its path. A new version of a file replaces
// the old one only if every message it redefines stays compatible in its
// JSON form; otherwise the whole change is refused and the old types keep
// working. The registry swaps complete snapshots atomically, so readers
// never lock.
package schema

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/apipb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/sourcecontextpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/typepb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	validatepb "buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"

	"github.com/heraldhq/herald/internal/broker"
)

// Source is where a type came from.
type Source int

// Sources of types.
const (
	Builtin Source = iota + 1
	File
	Pushed
)

func (s Source) String() string {
	switch s {
	case Builtin:
		return "builtin"
	case File:
		return "file"
	case Pushed:
		return "pushed"
	}
	return "unknown"
}

// builtinFiles are the files whose messages every registry knows.
var builtinFiles = []protoreflect.FileDescriptor{
	anypb.File_google_protobuf_any_proto,
	apipb.File_google_protobuf_api_proto,
	durationpb.File_google_protobuf_duration_proto,
	emptypb.File_google_protobuf_empty_proto,
	fieldmaskpb.File_google_protobuf_field_mask_proto,
	sourcecontextpb.File_google_protobuf_source_context_proto,
	structpb.File_google_protobuf_struct_proto,
	timestamppb.File_google_protobuf_timestamp_proto,
	typepb.File_google_protobuf_type_proto,
	wrapperspb.File_google_protobuf_wrappers_proto,
}

// supportFiles may be imported by schemas but hold no payload types:
// descriptor.proto (custom options) and buf.validate's constraints.
var supportFiles = []protoreflect.FileDescriptor{
	descriptorpb.File_google_protobuf_descriptor_proto,
	validatepb.File_buf_validate_validate_proto,
}

// fixedPath reports files Herald always provides itself: a copy inside a
// pushed set (buf and protoc include imports) is ignored.
func fixedPath(path string) bool {
	return strings.HasPrefix(path, "google/protobuf/") || strings.HasPrefix(path, "buf/validate/")
}

// Info describes a known message type.
type Info struct {
	Name   string
	File   string
	Source Source
}

// Options configure a Registry.
type Options struct {
	// Store keeps pushed schemas; nil keeps them in this process only.
	Store broker.SchemaStore
	// Compiled are files compiled into the binary that the registry knows
	// as builtin, besides the well-known types: their messages use the
	// generated Go types while unchanged. Descriptor files and pushes may
	// evolve them like any other file.
	Compiled []protoreflect.FileDescriptor
	// Descriptors are descriptor set files, or directories of them.
	Descriptors []string
	// Logger receives reload results (default slog.Default()).
	Logger *slog.Logger
}

// Registry resolves payload types. It is safe for concurrent use.
type Registry struct {
	opts Options
	log  *slog.Logger
	cur  atomic.Pointer[snapshot]

	mu          sync.Mutex // serializes changes to the layers below
	fileLayer   []*descriptorpb.FileDescriptorProto
	fileStamp   string // fingerprint of the descriptor files last loaded
	pushed      []*descriptorpb.FileDescriptorProto
	storeSeen   int // registrations read from the store
	lastRefresh time.Time

	validator protovalidate.Validator
}

// snapshot is one immutable state of the registry.
type snapshot struct {
	types   *protoregistry.Types
	files   *protoregistry.Files
	infos   map[protoreflect.FullName]Info
	names   []string
	sources map[string]Source // by file path
}

// New returns a registry of the well-known types and opts.Compiled, plus
// those in the descriptor files and the store. It fails if they cannot be
// loaded or conflict.
func New(ctx context.Context, opts Options) (*Registry, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	v, err := protovalidate.New()
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	r := &Registry{opts: opts, log: opts.Logger, validator: v}
	snap, _, err := r.build(nil)
	if err != nil {
		return nil, fmt.Errorf("schema: compiled-in types: %w", err)
	}
	r.cur.Store(snap)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.reloadFilesLocked(true); err != nil {
		return nil, err
	}
	if err := r.refreshLocked(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// NewBuiltin returns a registry of the well-known types and compiled only.
func NewBuiltin(compiled ...protoreflect.FileDescriptor) (*Registry, error) {
	return New(context.Background(), Options{Compiled: compiled})
}

// builtin returns the files the registry knows as builtin.
func (r *Registry) builtin() []protoreflect.FileDescriptor {
	return slices.Concat(builtinFiles, r.opts.Compiled)
}

// layers returns the file and pushed layers in application order.
func (r *Registry) layers(extraPushed []*descriptorpb.FileDescriptorProto) []layer {
	return []layer{
		{File, r.fileLayer},
		{Pushed, append(slices.Clip(r.pushed), extraPushed...)},
	}
}

type layer struct {
	source Source
	files  []*descriptorpb.FileDescriptorProto
}

// build compiles the built-in files plus the registry's layers (plus
// extra pushed files) into a snapshot, and lists the conflicts of the result
// with the current snapshot.
func (r *Registry) build(extra []*descriptorpb.FileDescriptorProto) (*snapshot, []string, error) {
	byPath := map[string]*descriptorpb.FileDescriptorProto{}
	sources := map[string]Source{}
	var order []string
	add := func(fd *descriptorpb.FileDescriptorProto, src Source) {
		path := fd.GetName()
		if _, ok := byPath[path]; !ok {
			order = append(order, path)
		}
		byPath[path] = fd
		sources[path] = src
	}
	builtin := r.builtin()
	for _, fd := range slices.Concat(supportFiles, builtin) {
		add(protodesc.ToFileDescriptorProto(fd), Builtin)
	}
	for _, fd := range builtinDeps(builtin) {
		add(protodesc.ToFileDescriptorProto(fd), Builtin)
	}
	var conflicts []string
	defined := map[string]string{} // message name → file path
	for _, path := range order {
		for _, name := range messageNames(byPath[path]) {
			defined[name] = path
		}
	}
	for _, l := range r.layers(extra) {
		for _, fd := range l.files {
			if fixedPath(fd.GetName()) {
				continue
			}
			if old, ok := byPath[fd.GetName()]; ok && sources[fd.GetName()] == Builtin && proto.Equal(old, fd) {
				continue // the very same file as compiled in
			}
			for _, name := range messageNames(fd) {
				if p, ok := defined[name]; ok && p != fd.GetName() {
					conflicts = append(conflicts, fmt.Sprintf("%s is already defined in %s, not %s (push new versions of a file under its own path)", name, p, fd.GetName()))
				}
				defined[name] = fd.GetName()
			}
			add(fd, l.source)
		}
	}
	if len(conflicts) > 0 {
		return nil, conflicts, nil
	}
	set := &descriptorpb.FileDescriptorSet{}
	for _, path := range order {
		set.File = append(set.File, byPath[path])
	}
	files, err := protodesc.NewFiles(set)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", errInvalidSet, err)
	}
	snap := &snapshot{types: new(protoregistry.Types), files: files, infos: map[protoreflect.FullName]Info{}, sources: sources}
	var regErr error
	files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		src := sources[fd.Path()]
		isSupport := slices.ContainsFunc(supportFiles, func(s protoreflect.FileDescriptor) bool { return s.Path() == fd.Path() })
		if isSupport {
			return true
		}
		regErr = registerFile(snap, fd, src, proto.Equal(byPath[fd.Path()], builtinProto(builtin, fd.Path())))
		return regErr == nil
	})
	if regErr != nil {
		return nil, nil, regErr
	}
	for name := range snap.infos {
		snap.names = append(snap.names, string(name))
	}
	sort.Strings(snap.names)
	if cur := r.cur.Load(); cur != nil {
		conflicts = compatibility(cur, snap)
	}
	return snap, conflicts, nil
}

var errInvalidSet = errors.New("invalid descriptor set")

// missRefreshEvery bounds how often lookups of unknown types read the
// store: a type pushed through another node is known here within it.
const missRefreshEvery = 50 * time.Millisecond

// builtinDeps are the files that builtin files import that are not
// themselves builtin.
func builtinDeps(builtin []protoreflect.FileDescriptor) []protoreflect.FileDescriptor {
	seen := map[string]bool{}
	for _, fd := range slices.Concat(supportFiles, builtin) {
		seen[fd.Path()] = true
	}
	var deps []protoreflect.FileDescriptor
	var walk func(fd protoreflect.FileDescriptor)
	walk = func(fd protoreflect.FileDescriptor) {
		imports := fd.Imports()
		for i := range imports.Len() {
			dep := imports.Get(i).FileDescriptor
			if !seen[dep.Path()] {
				seen[dep.Path()] = true
				deps = append(deps, dep)
				walk(dep)
			}
		}
	}
	for _, fd := range slices.Concat(supportFiles, builtin) {
		walk(fd)
	}
	return deps
}

func builtinProto(builtin []protoreflect.FileDescriptor, path string) *descriptorpb.FileDescriptorProto {
	for _, fd := range builtin {
		if fd.Path() == path {
			return protodesc.ToFileDescriptorProto(fd)
		}
	}
	return nil
}

// DescriptorSet returns a descriptor set of files with everything they
// import, each file after its imports, as `buf build` and `protoc
// --include_imports` write: for instance, to give files compiled into a
// binary to a Herald that was not (--descriptors).
func DescriptorSet(files ...protoreflect.FileDescriptor) *descriptorpb.FileDescriptorSet {
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	for _, fd := range files {
		add(fd)
	}
	return set
}

// registerFile adds fd's messages and extensions to snap. Unchanged
// compiled-in files use their generated Go types; the rest are dynamic.
func registerFile(snap *snapshot, fd protoreflect.FileDescriptor, src Source, generated bool) error {
	var walk func(msgs protoreflect.MessageDescriptors) error
	walk = func(msgs protoreflect.MessageDescriptors) error {
		for i := range msgs.Len() {
			md := msgs.Get(i)
			if md.IsMapEntry() {
				continue
			}
			var mt protoreflect.MessageType = dynamicpb.NewMessageType(md)
			if generated {
				if gt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName()); err == nil {
					mt = gt
				}
			}
			if err := snap.types.RegisterMessage(mt); err != nil {
				return err
			}
			snap.infos[md.FullName()] = Info{Name: string(md.FullName()), File: fd.Path(), Source: src}
			if err := walk(md.Messages()); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(fd.Messages()); err != nil {
		return err
	}
	exts := fd.Extensions()
	for i := range exts.Len() {
		if err := snap.types.RegisterExtension(dynamicpb.NewExtensionType(exts.Get(i))); err != nil {
			return err
		}
	}
	return nil
}

func messageNames(fd *descriptorpb.FileDescriptorProto) []string {
	var names []string
	var walk func(prefix string, msgs []*descriptorpb.DescriptorProto)
	walk = func(prefix string, msgs []*descriptorpb.DescriptorProto) {
		for _, m := range msgs {
			name := prefix + m.GetName()
			names = append(names, name)
			walk(name+".", m.GetNestedType())
		}
	}
	prefix := ""
	if fd.GetPackage() != "" {
		prefix = fd.GetPackage() + "."
	}
	walk(prefix, fd.GetMessageType())
	return names
}

// FindMessageByName implements protoregistry.MessageTypeResolver.
func (r *Registry) FindMessageByName(name protoreflect.FullName) (protoreflect.MessageType, error) {
	mt, err := r.cur.Load().types.FindMessageByName(name)
	if errors.Is(err, protoregistry.NotFound) && r.maybeRefresh() {
		return r.cur.Load().types.FindMessageByName(name)
	}
	return mt, err
}

// FindMessageByURL implements protoregistry.MessageTypeResolver.
func (r *Registry) FindMessageByURL(url string) (protoreflect.MessageType, error) {
	mt, err := r.cur.Load().types.FindMessageByURL(url)
	if errors.Is(err, protoregistry.NotFound) && r.maybeRefresh() {
		return r.cur.Load().types.FindMessageByURL(url)
	}
	return mt, err
}

// FindExtensionByName implements protoregistry.ExtensionTypeResolver.
func (r *Registry) FindExtensionByName(field protoreflect.FullName) (protoreflect.ExtensionType, error) {
	return r.cur.Load().types.FindExtensionByName(field)
}

// FindExtensionByNumber implements protoregistry.ExtensionTypeResolver.
func (r *Registry) FindExtensionByNumber(message protoreflect.FullName, field protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	return r.cur.Load().types.FindExtensionByNumber(message, field)
}

// RangeMessages calls f for every known message type until it returns
// false.
func (r *Registry) RangeMessages(f func(protoreflect.MessageType) bool) {
	r.cur.Load().types.RangeMessages(f)
}

// Names returns the full names of all known message types, sorted.
func (r *Registry) Names() []string { return slices.Clone(r.cur.Load().names) }

// List describes all known message types, sorted by name.
func (r *Registry) List() []Info {
	snap := r.cur.Load()
	out := make([]Info, 0, len(snap.names))
	for _, n := range snap.names {
		out = append(out, snap.infos[protoreflect.FullName(n)])
	}
	return out
}

// Lookup describes one known message type.
func (r *Registry) Lookup(name string) (Info, protoreflect.MessageDescriptor, bool) {
	snap := r.cur.Load()
	info, ok := snap.infos[protoreflect.FullName(name)]
	if !ok {
		return Info{}, nil, false
	}
	d, err := snap.files.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		return Info{}, nil, false
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	return info, md, ok
}

// ValidatePayload checks msg against its schema's buf.validate constraints.
// Violations come back as a broker.ViolationsError with field paths.
func (r *Registry) ValidatePayload(msg proto.Message) error {
	err := r.validator.Validate(msg)
	if err == nil {
		return nil
	}
	var verr *protovalidate.ValidationError
	if !errors.As(err, &verr) {
		return fmt.Errorf("checking the constraints of %s: %w", msg.ProtoReflect().Descriptor().FullName(), err)
	}
	out := &broker.ViolationsError{Type: string(msg.ProtoReflect().Descriptor().FullName())}
	for _, v := range verr.Violations {
		out.Violations = append(out.Violations, broker.FieldViolation{
			Field:       protovalidate.FieldPathString(v.Proto.GetField()),
			Description: v.Proto.GetMessage(),
		})
	}
	return out
}

// Register adds the files of set (a pushed registration) after checking
// them against the known types, saves the set in the store, and returns the
// names of added and updated message types.
func (r *Registry) Register(ctx context.Context, set *descriptorpb.FileDescriptorSet) (added, updated []string, err error) {
	var files []*descriptorpb.FileDescriptorProto
	for _, fd := range set.GetFile() {
		if !fixedPath(fd.GetName()) {
			files = append(files, fd)
		}
	}
	if len(files) == 0 {
		return nil, nil, fmt.Errorf("%w: the set holds no files besides google/protobuf and buf/validate ones", broker.ErrInvalidEvent)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refreshLocked(ctx); err != nil {
		return nil, nil, err
	}
	snap, conflicts, err := r.build(files)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", broker.ErrBadRequest, err)
	}
	if len(conflicts) > 0 {
		return nil, nil, &ConflictError{Conflicts: conflicts}
	}
	old := r.cur.Load()
	if r.opts.Store != nil {
		raw, err := proto.Marshal(&descriptorpb.FileDescriptorSet{File: files})
		if err != nil {
			return nil, nil, err
		}
		if err := r.opts.Store.SaveSchemas(ctx, raw); err != nil {
			return nil, nil, err
		}
		// Read it back in store order, with whatever other nodes saved
		// meanwhile, so that every node applies the same sequence.
		if err := r.refreshLocked(ctx); err != nil {
			return nil, nil, err
		}
	} else {
		r.pushed = append(r.pushed, files...)
		r.cur.Store(snap)
	}
	for _, fd := range files {
		for _, name := range messageNames(fd) {
			if _, ok := old.infos[protoreflect.FullName(name)]; ok {
				updated = append(updated, name)
			} else {
				added = append(added, name)
			}
		}
	}
	return added, updated, nil
}

// ConflictError lists why a set of schemas was refused.
type ConflictError struct {
	Conflicts []string
}

func (e *ConflictError) Error() string {
	return "incompatible schema change: " + strings.Join(e.Conflicts, "; ")
}

// Unwrap makes a ConflictError a broker.ErrConflict.
func (e *ConflictError) Unwrap() error { return broker.ErrConflict }

// Reload re-reads the descriptor files and the store. On a conflict or a
// broken file it keeps the current types and returns the error.
func (r *Registry) Reload(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.reloadFilesLocked(true); err != nil {
		return err
	}
	return r.refreshLocked(ctx)
}

// Watch reloads the descriptor files when they change and reads new
// registrations from the store (pushed on other nodes), every interval,
// until ctx ends.
func (r *Registry) Watch(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.mu.Lock()
			changed, err := r.reloadFilesLocked(false)
			if err != nil {
				r.log.Error("descriptor files changed but were not loaded; the previous types stay in use", "err", err)
			} else if changed {
				r.log.Info("descriptor files reloaded", "types", len(r.cur.Load().names))
			}
			if err := r.refreshLocked(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("reading pushed schemas from the broker failed", "err", err)
			}
			r.mu.Unlock()
		}
	}
}

// reloadFilesLocked loads the descriptor files if force or if they changed.
func (r *Registry) reloadFilesLocked(force bool) (bool, error) {
	if len(r.opts.Descriptors) == 0 {
		return false, nil
	}
	paths, stamp, err := descriptorFiles(r.opts.Descriptors)
	if err != nil {
		return false, fmt.Errorf("schema: --descriptors: %w", err)
	}
	if !force && stamp == r.fileStamp {
		return false, nil
	}
	r.fileStamp = stamp // a broken change is reported once, not on every tick
	var files []*descriptorpb.FileDescriptorProto
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			return false, fmt.Errorf("schema: %w", err)
		}
		var set descriptorpb.FileDescriptorSet
		if err := proto.Unmarshal(raw, &set); err != nil {
			return false, fmt.Errorf("schema: %s is not a descriptor set (buf build -o x.binpb, or protoc --include_imports --descriptor_set_out): %v", p, err)
		}
		files = append(files, set.GetFile()...)
	}
	prev := r.fileLayer
	r.fileLayer = files
	snap, conflicts, err := r.build(nil)
	if err == nil && len(conflicts) > 0 {
		err = &ConflictError{Conflicts: conflicts}
	}
	if err != nil {
		r.fileLayer = prev
		return false, fmt.Errorf("schema: descriptor files: %w", err)
	}
	r.cur.Store(snap)
	return true, nil
}

// descriptorFiles lists the files named by paths (directories: their
// regular files, not hidden, not recursive) and a fingerprint of their
// names, sizes and modification times.
func descriptorFiles(paths []string) ([]string, string, error) {
	var files []string
	var stamp strings.Builder
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, "", err
		}
		if !st.IsDir() {
			files = append(files, p)
			fmt.Fprintf(&stamp, "%s %d %d\n", p, st.Size(), st.ModTime().UnixNano())
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, "", err
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") {
				continue
			}
			full := filepath.Join(p, e.Name())
			st, err := os.Stat(full) // follows links, as configmaps use them
			if err != nil || !st.Mode().IsRegular() {
				continue
			}
			files = append(files, full)
			fmt.Fprintf(&stamp, "%s %d %d\n", full, st.Size(), st.ModTime().UnixNano())
		}
	}
	return files, stamp.String(), nil
}

// refreshLocked applies registrations saved in the store since the last
// read (those pushed through other nodes).
func (r *Registry) refreshLocked(ctx context.Context) error {
	r.lastRefresh = time.Now()
	if r.opts.Store == nil {
		return nil
	}
	sets, err := r.opts.Store.LoadSchemas(ctx, r.storeSeen)
	if err != nil || len(sets) == 0 {
		return err
	}
	prev := r.pushed
	for _, raw := range sets {
		var set descriptorpb.FileDescriptorSet
		if err := proto.Unmarshal(raw, &set); err != nil {
			return fmt.Errorf("schema: a stored registration is corrupt: %w", err)
		}
		r.pushed = append(r.pushed, set.GetFile()...)
	}
	snap, _, err := r.build(nil)
	if err != nil {
		r.pushed = prev
		return fmt.Errorf("schema: stored registrations: %w", err)
	}
	// Conflicts were checked when each set was registered.
	r.storeSeen += len(sets)
	r.cur.Store(snap)
	return nil
}

// maybeRefresh reads new registrations from the store after a lookup miss,
// at most every missRefreshEvery. It reports whether anything changed.
func (r *Registry) maybeRefresh() bool {
	if r.opts.Store == nil || !r.mu.TryLock() {
		return false
	}
	defer r.mu.Unlock()
	if time.Since(r.lastRefresh) < missRefreshEvery {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	before := r.storeSeen
	if err := r.refreshLocked(ctx); err != nil {
		r.log.Warn("reading pushed schemas from the broker failed", "err", err)
	}
	return r.storeSeen != before
}
