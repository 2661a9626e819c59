package schema

import (
	"fmt"
	"math"
	"path"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/broker"
)

// The checks of a push that come before the registry builds anything:
// size, file names, counts, who may change what, and the totals.

// maxFileNameLen bounds a pushed file's name, in bytes.
const maxFileNameLen = 512

// checkSet checks what a push holds on its own, cheapest first, and
// returns its files besides google/protobuf and buf/validate ones.
func (r *Registry) checkSet(set *descriptorpb.FileDescriptorSet) ([]*descriptorpb.FileDescriptorProto, error) {
	if n := proto.Size(set); n > r.opts.MaxPushBytes {
		return nil, fmt.Errorf("%w: the descriptor set is %d bytes, over the limit of %d bytes per push (--max-schema-push-bytes): push it in parts", broker.ErrBadRequest, n, r.opts.MaxPushBytes)
	}
	seen := map[string]bool{}
	var files []*descriptorpb.FileDescriptorProto
	types := 0
	for _, fd := range set.GetFile() {
		name := fd.GetName()
		if why := badFileName(name); why != "" {
			return nil, fmt.Errorf("%w: file name %q %s; a file is named by its path relative to the root of its module, like shop/v1/cart.proto", broker.ErrBadRequest, broker.Printable(name), why)
		}
		if seen[name] {
			return nil, fmt.Errorf("%w: file %s is in the set twice", broker.ErrBadRequest, name)
		}
		seen[name] = true
		if fixedPath(name) {
			continue
		}
		files = append(files, fd)
		types += countTypes(fd)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: the set holds no files besides google/protobuf and buf/validate ones", broker.ErrInvalidEvent)
	}
	if types > r.opts.MaxPushTypes {
		return nil, fmt.Errorf("%w: the set holds %d message types, over the limit of %d per push (--max-schema-push-types): push it in parts", broker.ErrBadRequest, types, r.opts.MaxPushTypes)
	}
	return files, nil
}

// badFileName says what is wrong with a pushed file's name, or "". A name
// is a clean relative path ending in .proto: it ends up in logs, listings
// and the files code generators write.
func badFileName(name string) string {
	switch {
	case name == "":
		return "is empty"
	case len(name) > maxFileNameLen:
		return fmt.Sprintf("is %d bytes, longer than the limit of %d", len(name), maxFileNameLen)
	case !utf8.ValidString(name):
		return "is not valid UTF-8"
	case strings.ContainsFunc(name, unicode.IsControl):
		return "holds a control character"
	case strings.ContainsRune(name, '\\'):
		return "holds a backslash (paths are separated by /)"
	case strings.HasPrefix(name, "/"):
		return "is absolute"
	case slices.Contains(strings.Split(name, "/"), ".."):
		return `leaves its root ("..")`
	case path.Clean(name) != name:
		return fmt.Sprintf("is not a clean path (%q is)", path.Clean(name))
	case !strings.HasSuffix(name, ".proto"):
		return "does not end in .proto"
	}
	return ""
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

// checkTotals refuses a change that would take the pushed files over
// Options.MaxPushedTypes or MaxPushedBytes. A change that does not grow a
// total passes, so that an operator who lowers a limit does not freeze the
// files already pushed.
func (r *Registry) checkTotals(cur *snapshot, changed []*descriptorpb.FileDescriptorProto) error {
	types, size := cur.pushedTypes, cur.pushedBytes
	for _, fd := range changed {
		if old := cur.files.at(fd.GetName()); old != nil && old.src == Pushed {
			types -= old.types
			size -= old.size
		}
		types += countTypes(fd)
		size += proto.Size(fd)
	}
	if types > r.opts.MaxPushedTypes && types > cur.pushedTypes {
		return &LimitError{Msg: fmt.Sprintf("this push would bring the pushed message types to %d, over this server's limit of %d (--max-pushed-types); pushes that add types are refused until an operator raises it", types, r.opts.MaxPushedTypes)}
	}
	if size > r.opts.MaxPushedBytes && size > cur.pushedBytes {
		return &LimitError{Msg: fmt.Sprintf("this push would bring the pushed schemas to %d bytes, over this server's limit of %d (--max-pushed-schema-bytes); pushes that grow them are refused until an operator raises it", size, r.opts.MaxPushedBytes)}
	}
	return nil
}

// LimitError refuses a push over a limit other than its own size: the
// caller's rate of pushes, which a retry after RetryAfter passes, or the
// capacity of the registry, which only an operator can raise (RetryAfter
// is zero). It carries its gRPC status, RESOURCE_EXHAUSTED (HTTP 429),
// with a RetryInfo detail when RetryAfter is set.
type LimitError struct {
	Msg        string
	RetryAfter time.Duration
}

func (e *LimitError) Error() string { return "limit reached: " + e.Msg }

// GRPCStatus is the error's status: RESOURCE_EXHAUSTED.
func (e *LimitError) GRPCStatus() *status.Status {
	st := status.New(codes.ResourceExhausted, e.Error())
	if e.RetryAfter > 0 {
		if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(e.RetryAfter)}); err == nil {
			st = d
		}
	}
	return st
}

// pushLimiter bounds the pushes per caller (auth.Permissions.RateKey) per
// minute. Its lock is taken alone.
type pushLimiter struct {
	perMinute int

	mu   sync.Mutex
	keys map[string]*rate.Limiter
}

func newPushLimiter(perMinute int) *pushLimiter {
	return &pushLimiter{perMinute: perMinute, keys: map[string]*rate.Limiter{}}
}

// allow takes one push from key's budget, or says when to retry. The
// empty key is not limited.
func (l *pushLimiter) allow(key string) error {
	if key == "" {
		return nil
	}
	now := time.Now()
	l.mu.Lock()
	lim := l.keys[key]
	if lim == nil {
		if len(l.keys) >= 10000 {
			// Forgetting a limiter whose budget is full changes nothing.
			for k, lim := range l.keys {
				if lim.TokensAt(now) >= float64(l.perMinute) {
					delete(l.keys, k)
				}
			}
		}
		lim = rate.NewLimiter(rate.Every(time.Minute/time.Duration(l.perMinute)), l.perMinute)
		l.keys[key] = lim
	}
	res := lim.ReserveN(now, 1)
	l.mu.Unlock()
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		d = time.Duration(math.Ceil(d.Seconds())) * time.Second
		return &LimitError{Msg: fmt.Sprintf("this caller's %d schema pushes per minute are used (--schema-pushes-per-minute)", l.perMinute), RetryAfter: d}
	}
	return nil
}
