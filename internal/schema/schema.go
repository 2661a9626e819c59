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
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
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

	"github.com/heraldhq/herald/internal/auth"
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

// Options configure a Registry. Zero values mean the defaults.
type Options struct {
	// Store keeps pushed schemas; nil keeps them in this process only.
	Store broker.SchemaStore
	// Compiled are files compiled into the binary that the registry knows
	// as builtin, besides the well-known types: their messages use the
	// generated Go types while unchanged. Descriptor files may evolve
	// them; pushes may not touch their packages.
	Compiled []protoreflect.FileDescriptor
	// Descriptors are descriptor set files, or directories of them.
	Descriptors []string
	// Logger receives reload results (default slog.Default()).
	Logger *slog.Logger

	// Limits of pushes (Register). A push over one is refused whole.

	// MaxPushBytes bounds the encoded size of one pushed descriptor set
	// (default DefaultMaxPushBytes).
	MaxPushBytes int
	// MaxPushTypes bounds the message types in one push (default
	// DefaultMaxPushTypes).
	MaxPushTypes int
	// MaxPushedTypes and MaxPushedBytes bound the message types and the
	// encoded size of all pushed files together (defaults
	// DefaultMaxPushedTypes and DefaultMaxPushedBytes): what every node
	// holds in memory and reads from the store at start.
	MaxPushedTypes int
	MaxPushedBytes int
	// PushesPerMinute bounds the pushes of one caller
	// (auth.Permissions.RateKey of the context) per minute, in bursts of
	// as many (default DefaultPushesPerMinute).
	PushesPerMinute int
}

// Defaults of Options.
const (
	DefaultMaxPushBytes    = 1 << 20
	DefaultMaxPushTypes    = 1000
	DefaultMaxPushedTypes  = 10000
	DefaultMaxPushedBytes  = 32 << 20
	DefaultPushesPerMinute = 10
)

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	for _, d := range []struct {
		v   *int
		def int
	}{
		{&o.MaxPushBytes, DefaultMaxPushBytes}, {&o.MaxPushTypes, DefaultMaxPushTypes},
		{&o.MaxPushedTypes, DefaultMaxPushedTypes}, {&o.MaxPushedBytes, DefaultMaxPushedBytes},
		{&o.PushesPerMinute, DefaultPushesPerMinute},
	} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	return o
}

// Registry resolves payload types. It is safe for concurrent use: readers
// load the current snapshot without locks; changes are serialized by mu
// and published as a whole.
type Registry struct {
	opts Options
	log  *slog.Logger
	cur  atomic.Pointer[snapshot]

	// base holds the compiled-in files alone; immutable. Rebuilds start
	// from a copy of it.
	base *snapshot
	// reserved are the packages of the compiled-in files: no push may add
	// to or change them.
	reserved map[string]bool
	pushes   *pushLimiter

	mu          sync.Mutex // serializes changes: the fields below, and building snapshots
	fileLayer   []*descriptorpb.FileDescriptorProto
	fileStamp   string // fingerprint of the descriptor files last loaded
	storeSeen   int    // registrations read from the store
	lastRefresh time.Time

	validator protovalidate.Validator
}

// New returns a registry of the well-known types and opts.Compiled, plus
// those in the descriptor files and the store. It fails if they cannot be
// loaded or conflict.
func New(ctx context.Context, opts Options) (*Registry, error) {
	opts = opts.withDefaults()
	v, err := protovalidate.New()
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	r := &Registry{opts: opts, log: opts.Logger, validator: v, pushes: newPushLimiter(opts.PushesPerMinute)}
	if r.base, r.reserved, err = builtinSnapshot(slices.Concat(builtinFiles, opts.Compiled)); err != nil {
		return nil, fmt.Errorf("schema: compiled-in types: %w", err)
	}
	r.cur.Store(r.base)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.reloadFilesLocked(true); err != nil {
		return nil, err
	}
	if _, err := r.refreshLocked(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// NewBuiltin returns a registry of the well-known types and compiled only.
func NewBuiltin(compiled ...protoreflect.FileDescriptor) (*Registry, error) {
	return New(context.Background(), Options{Compiled: compiled})
}

// builtinSnapshot is the snapshot of the support files, the builtin ones
// and what they import, all linked into the binary; and their packages.
func builtinSnapshot(builtin []protoreflect.FileDescriptor) (*snapshot, map[string]bool, error) {
	var ins []input
	seen := map[string]bool{}
	packages := map[string]bool{}
	add := func(fd protoreflect.FileDescriptor, support bool) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		packages[string(fd.Package())] = true
		ins = append(ins, input{proto: protodesc.ToFileDescriptorProto(fd), src: Builtin, linked: fd, support: support})
	}
	for _, fd := range supportFiles {
		add(fd, true)
	}
	for _, fd := range builtin {
		add(fd, false)
	}
	for _, fd := range builtinDeps(builtin) {
		add(fd, false)
	}
	s := newSnapshot()
	if _, err := s.apply(ins, applyOptions{}); err != nil {
		return nil, nil, err
	}
	return s, packages, nil
}

// rebuild builds a snapshot from scratch: the compiled-in files, then the
// file layer, then the pushed files, a later file replacing an earlier one
// at the same path. A file identical to a compiled-in one leaves that one
// in place, with its generated Go types.
func (r *Registry) rebuild(fileLayer, pushed []*descriptorpb.FileDescriptorProto) (*snapshot, error) {
	byPath := map[string]input{}
	var order []string
	put := func(fd *descriptorpb.FileDescriptorProto, src Source) {
		if fixedPath(fd.GetName()) {
			return
		}
		if _, ok := byPath[fd.GetName()]; !ok {
			order = append(order, fd.GetName())
		}
		byPath[fd.GetName()] = input{proto: fd, src: src}
	}
	for _, fd := range fileLayer {
		put(fd, File)
	}
	for _, fd := range pushed {
		put(fd, Pushed)
	}
	var ins []input
	for _, path := range order {
		in := byPath[path]
		if e := r.base.files.at(path); e != nil && proto.Equal(e.proto, in.proto) {
			continue
		}
		ins = append(ins, in)
	}
	next := r.base.clone()
	if _, err := next.apply(ins, applyOptions{}); err != nil {
		return nil, err
	}
	return next, nil
}

// pushedFiles are the files of s that were pushed, by path.
func pushedFiles(s *snapshot) []*descriptorpb.FileDescriptorProto {
	var out []*descriptorpb.FileDescriptorProto
	for _, e := range s.files.all() {
		if e.src == Pushed {
			out = append(out, e.proto)
		}
	}
	slices.SortFunc(out, func(a, b *descriptorpb.FileDescriptorProto) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out
}

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

// FindMessageByName implements protoregistry.MessageTypeResolver.
func (r *Registry) FindMessageByName(name protoreflect.FullName) (protoreflect.MessageType, error) {
	mt, err := r.cur.Load().findMessage(name)
	if errors.Is(err, protoregistry.NotFound) && r.maybeRefresh() {
		return r.cur.Load().findMessage(name)
	}
	return mt, err
}

// FindMessageByURL implements protoregistry.MessageTypeResolver: the
// type's full name follows the last slash of url.
func (r *Registry) FindMessageByURL(url string) (protoreflect.MessageType, error) {
	name := protoreflect.FullName(url)
	if i := strings.LastIndexByte(url, '/'); i >= 0 {
		name = name[i+1:]
	}
	return r.FindMessageByName(name)
}

func (s *snapshot) findMessage(name protoreflect.FullName) (protoreflect.MessageType, error) {
	if mt, ok := s.messages.get(name); ok {
		return mt, nil
	}
	return nil, protoregistry.NotFound
}

// FindExtensionByName implements protoregistry.ExtensionTypeResolver.
func (r *Registry) FindExtensionByName(field protoreflect.FullName) (protoreflect.ExtensionType, error) {
	if xt, ok := r.cur.Load().extByName.get(field); ok {
		return xt, nil
	}
	return nil, protoregistry.NotFound
}

// FindExtensionByNumber implements protoregistry.ExtensionTypeResolver.
func (r *Registry) FindExtensionByNumber(message protoreflect.FullName, field protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	if xt, ok := r.cur.Load().extByNum.get(extKey{message, field}); ok {
		return xt, nil
	}
	return nil, protoregistry.NotFound
}

// RangeMessages calls f for every known message type until it returns
// false.
func (r *Registry) RangeMessages(f func(protoreflect.MessageType) bool) {
	for _, mt := range r.cur.Load().messages.all() {
		if !f(mt) {
			return
		}
	}
}

// Names returns the full names of all known message types, sorted.
func (r *Registry) Names() []string { return slices.Clone(r.cur.Load().sortedNames()) }

// List describes all known message types, sorted by name.
func (r *Registry) List() []Info {
	snap := r.cur.Load()
	names := snap.sortedNames()
	out := make([]Info, 0, len(names))
	for _, n := range names {
		out = append(out, snap.info(snap.messages.at(protoreflect.FullName(n))))
	}
	return out
}

// Lookup describes one known message type.
func (r *Registry) Lookup(name string) (Info, protoreflect.MessageDescriptor, bool) {
	snap := r.cur.Load()
	mt, ok := snap.messages.get(protoreflect.FullName(name))
	if !ok {
		return Info{}, nil, false
	}
	return snap.info(mt), mt.Descriptor(), true
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
// them against the limits of Options and the known types, saves them in
// the store, and returns the names of added and updated message types.
//
// When ctx carries the caller's permissions (auth.NewContext: the caller
// came through the server), the push is refused whole with an
// auth.ErrPermissionDenied if it adds or changes a type outside the
// packages of Permissions.Schemas, or in a reserved package (herald.*,
// google.*, buf.*, those of compiled-in files), and it counts against the
// caller's rate of pushes. A file of the set identical to the one the
// registry holds changes nothing and is not stored again; a copy of a
// file the caller may not change is accepted as long as it differs only
// in its comments (source info), and is left out too.
//
// Its errors wrap broker.ErrBadRequest (a malformed set, a bad file name,
// a push over a per-push limit), broker.ErrConflict (ConflictError),
// auth.ErrPermissionDenied, or are a *LimitError; others are the store's.
func (r *Registry) Register(ctx context.Context, set *descriptorpb.FileDescriptorSet) (added, updated []string, err error) {
	perms, authz := auth.FromContext(ctx)
	if authz {
		if err := r.pushes.allow(perms.RateKey); err != nil {
			return nil, nil, err
		}
	}
	files, err := r.checkSet(set)
	if err != nil {
		return nil, nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.refreshLocked(ctx); err != nil {
		return nil, nil, err
	}
	cur := r.cur.Load()
	var changed []*descriptorpb.FileDescriptorProto
	for _, fd := range files {
		old := cur.files.at(fd.GetName())
		if old != nil && proto.Equal(old.proto, fd) {
			continue
		}
		if authz {
			if err := r.mayChange(old, fd, perms); err != nil {
				if old != nil && sameDefinition(old.proto, fd) {
					continue // a copy of a file the caller does not own
				}
				return nil, nil, err
			}
		}
		changed = append(changed, fd)
	}
	if len(changed) == 0 {
		return nil, nil, nil
	}
	if err := r.checkTotals(cur, changed); err != nil {
		return nil, nil, err
	}
	next := cur.clone()
	ins := make([]input, len(changed))
	for i, fd := range changed {
		ins[i] = input{proto: fd, src: Pushed}
	}
	replaced, err := next.apply(ins, applyOptions{noMoves: true})
	if errors.Is(err, errInvalidSet) {
		return nil, nil, fmt.Errorf("%w: %v", broker.ErrBadRequest, err)
	}
	if err != nil {
		return nil, nil, err
	}
	if conflicts := compatibility(replaced, next); len(conflicts) > 0 {
		return nil, nil, &ConflictError{Conflicts: conflicts}
	}
	added, updated = changes(cur, next, changed)
	if r.opts.Store == nil {
		r.cur.Store(next)
		return added, updated, nil
	}
	raw, err := proto.Marshal(&descriptorpb.FileDescriptorSet{File: changed})
	if err != nil {
		return nil, nil, err
	}
	if err := r.opts.Store.SaveSchemas(ctx, raw); err != nil {
		return nil, nil, err
	}
	// Read it back in store order, with whatever other nodes saved
	// meanwhile, so that every node applies the same sequence. When
	// nothing came in between, what was built is what the store says.
	sets, err := r.opts.Store.LoadSchemas(ctx, r.storeSeen)
	if err != nil {
		return nil, nil, err
	}
	if len(sets) == 1 && bytes.Equal(sets[0], raw) {
		r.storeSeen++
		r.cur.Store(next)
		return added, updated, nil
	}
	errs := r.applyStored(sets)
	for i := len(sets) - 1; i >= 0; i-- {
		if bytes.Equal(sets[i], raw) {
			if errs[i] != nil {
				return nil, nil, fmt.Errorf("a push saved meanwhile on another node conflicts with this one, which every node ignores: %w", errs[i])
			}
			break
		}
	}
	return added, updated, nil
}

// changes lists the message types of files that next added to cur, and
// those that it changed.
func changes(cur, next *snapshot, files []*descriptorpb.FileDescriptorProto) (added, updated []string) {
	for _, fd := range files {
		rangeMessages(next.files.at(fd.GetName()).fd.Messages(), func(md protoreflect.MessageDescriptor) {
			old, ok := cur.messages.get(md.FullName())
			switch {
			case !ok:
				added = append(added, string(md.FullName()))
			case !proto.Equal(messageProto(old.Descriptor()), messageProto(md)):
				updated = append(updated, string(md.FullName()))
			}
		})
	}
	return added, updated
}

// messageProto is md's definition without its nested messages (they are
// types of their own).
func messageProto(md protoreflect.MessageDescriptor) *descriptorpb.DescriptorProto {
	p := protodesc.ToDescriptorProto(md)
	p.NestedType = nil
	return p
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
	_, err := r.refreshLocked(ctx)
	return err
}

// Watch reloads the descriptor files when they change and reads new
// registrations from the store (pushed on other nodes), every interval,
// until ctx ends.
//
// A store that cannot be read (the broker is out, or its log was reset) is
// logged once, and once more when it can be read again: the broker's own
// lines say why.
func (r *Registry) Watch(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
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
				r.log.Info("descriptor files reloaded", "types", r.cur.Load().messages.len())
			}
			_, err = r.refreshLocked(ctx)
			switch {
			case err != nil && ctx.Err() == nil && !failing:
				failing = true
				r.log.Warn("reading pushed schemas from the broker failed; retrying quietly until it works", "err", err)
			case err == nil && failing:
				failing = false
				r.log.Info("reading pushed schemas from the broker works again")
			}
			r.mu.Unlock()
		}
	}
}

// reloadFilesLocked loads the descriptor files if force or if they
// changed, rebuilding the registry from scratch over them.
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
	cur := r.cur.Load()
	next, err := r.rebuild(files, pushedFiles(cur))
	if err == nil {
		if conflicts := compatibility(allMessages(cur), next); len(conflicts) > 0 {
			err = &ConflictError{Conflicts: conflicts}
		}
	}
	if err != nil {
		return false, fmt.Errorf("schema: descriptor files: %w", err)
	}
	r.fileLayer = files
	r.cur.Store(next)
	return true, nil
}

// allMessages are the message descriptors of s.
func allMessages(s *snapshot) []protoreflect.MessageDescriptor {
	out := make([]protoreflect.MessageDescriptor, 0, s.messages.len())
	for _, mt := range s.messages.all() {
		out = append(out, mt.Descriptor())
	}
	return out
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

// refreshLocked applies the registrations saved in the store since the
// last read (those pushed through other nodes), and reports how many.
func (r *Registry) refreshLocked(ctx context.Context) (int, error) {
	r.lastRefresh = time.Now()
	if r.opts.Store == nil {
		return 0, nil
	}
	sets, err := r.opts.Store.LoadSchemas(ctx, r.storeSeen)
	if err != nil || len(sets) == 0 {
		return 0, err
	}
	r.applyStored(sets)
	return len(sets), nil
}

// applyStored applies registrations read from the store, in order, on a
// copy of the current snapshot, and publishes the result. Each was checked
// when it was pushed; one that no longer applies (pushed concurrently with
// a conflicting one on another node) is skipped, as every node skips it,
// and its error is returned at its index.
func (r *Registry) applyStored(sets [][]byte) []error {
	errs := make([]error, len(sets))
	next := r.cur.Load().clone()
	for i, raw := range sets {
		var set descriptorpb.FileDescriptorSet
		if err := proto.Unmarshal(raw, &set); err != nil {
			errs[i] = fmt.Errorf("%w: a stored registration is corrupt: %v", broker.ErrBadRequest, err)
		} else {
			// Later files win over earlier ones at the same path, as
			// they did when every push rebuilt everything.
			byPath := map[string]int{}
			var ins []input
			for _, fd := range set.GetFile() {
				if e := next.files.at(fd.GetName()); fixedPath(fd.GetName()) || e != nil && proto.Equal(e.proto, fd) {
					continue
				}
				if j, ok := byPath[fd.GetName()]; ok {
					ins[j].proto = fd
					continue
				}
				byPath[fd.GetName()] = len(ins)
				ins = append(ins, input{proto: fd, src: Pushed})
			}
			if _, err := next.apply(ins, applyOptions{}); err != nil {
				errs[i] = err
			}
		}
		if errs[i] != nil {
			r.log.Error("a stored schema registration was not applied; every node skips it", "index", r.storeSeen+i, "err", errs[i])
		}
	}
	r.storeSeen += len(sets)
	r.cur.Store(next)
	return errs
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
	n, err := r.refreshLocked(ctx)
	if err != nil {
		r.log.Warn("reading pushed schemas from the broker failed", "err", err)
	}
	return n > 0
}
