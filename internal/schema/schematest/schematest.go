// Package schematest compiles .proto sources written in a test into the
// descriptor sets that buf build and protoc produce, so tests can push
// schemas Herald was not built with.
package schematest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	// buf/validate/validate.proto, importable by test schemas.
	_ "buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"

	"github.com/heraldhq/herald/internal/schema"
)

// Compile compiles sources (path → .proto text) and returns a descriptor
// set of them with all their imports, like `buf build` or `protoc
// --include_imports`. Imports of well-known types and of
// buf/validate/validate.proto resolve to the copies linked into the test.
func Compile(tb testing.TB, sources map[string]string) *descriptorpb.FileDescriptorSet {
	tb.Helper()
	linked := protocompile.ResolverFunc(func(path string) (protocompile.SearchResult, error) {
		fd, err := protoregistry.GlobalFiles.FindFileByPath(path)
		if err != nil {
			return protocompile.SearchResult{}, err
		}
		return protocompile.SearchResult{Desc: fd}, nil
	})
	c := protocompile.Compiler{
		Resolver: protocompile.CompositeResolver{
			&protocompile.SourceResolver{Accessor: protocompile.SourceAccessorFromMap(sources)},
			linked,
		},
	}
	var names []string
	for name := range sources {
		names = append(names, name)
	}
	files, err := c.Compile(context.Background(), names...)
	if err != nil {
		tb.Fatalf("compiling test protos: %v", err)
	}
	fds := make([]protoreflect.FileDescriptor, len(files))
	for i, f := range files {
		fds[i] = f
	}
	return schema.DescriptorSet(fds...)
}

// WriteSet writes set to dir/name, as `buf build -o` would.
func WriteSet(tb testing.TB, dir, name string, set *descriptorpb.FileDescriptorSet) string {
	tb.Helper()
	raw, err := proto.Marshal(set)
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(dir, name)
	tmp := filepath.Join(dir, "."+name+".tmp") // hidden: watchers skip it
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
	return path
}
