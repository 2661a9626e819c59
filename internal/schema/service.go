package schema

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/structpb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/broker"
)

// Service implements herald.v1.SchemaService on a Registry. Its errors are
// gRPC statuses (a *LimitError carries one) or wrap the sentinel errors of
// internal/broker and internal/auth, which the server maps to codes.
//
// RegisterSchemas authorizes a push by the caller's permissions in the
// context (auth.NewContext), which the server puts there once it has
// authenticated the caller; see Registry.Register.
type Service struct {
	heraldv1.UnimplementedSchemaServiceServer
	reg *Registry
}

// NewService returns the SchemaService of reg.
func NewService(reg *Registry) *Service { return &Service{reg: reg} }

// RegisterSchemas implements herald.v1.SchemaService.
func (s *Service) RegisterSchemas(ctx context.Context, req *heraldv1.RegisterSchemasRequest) (*heraldv1.RegisterSchemasResponse, error) {
	if req.GetDescriptors() == nil {
		return nil, status.Error(codes.InvalidArgument, "descriptors is missing: send a FileDescriptorSet (buf build -o x.binpb)")
	}
	added, updated, err := s.reg.Register(ctx, req.GetDescriptors())
	if err != nil {
		// The server maps the sentinels to codes: a conflict is
		// FAILED_PRECONDITION, a malformed set or one over a per-push
		// limit INVALID_ARGUMENT, a package the caller may not push
		// PERMISSION_DENIED, a broker outage UNAVAILABLE; a *LimitError
		// is RESOURCE_EXHAUSTED by itself.
		var limit *LimitError
		if errors.As(err, &limit) {
			if limit.RetryAfter > 0 {
				// Over REST, the gateway turns it into Retry-After.
				_ = grpc.SetHeader(ctx, metadata.Pairs("retry-after", strconv.Itoa(int(math.Ceil(limit.RetryAfter.Seconds())))))
			}
			return nil, err
		}
		var conflict *ConflictError
		if errors.As(err, &conflict) || errors.Is(err, broker.ErrBadRequest) || errors.Is(err, broker.ErrInvalidEvent) || errors.Is(err, auth.ErrPermissionDenied) {
			return nil, err
		}
		return nil, fmt.Errorf("storing the schemas: %w", err)
	}
	return &heraldv1.RegisterSchemasResponse{Added: added, Updated: updated}, nil
}

// ListSchemas implements herald.v1.SchemaService.
func (s *Service) ListSchemas(context.Context, *heraldv1.ListSchemasRequest) (*heraldv1.ListSchemasResponse, error) {
	resp := &heraldv1.ListSchemasResponse{}
	for _, info := range s.reg.List() {
		resp.Schemas = append(resp.Schemas, schemaOf(info))
	}
	return resp, nil
}

// GetSchema implements herald.v1.SchemaService.
func (s *Service) GetSchema(_ context.Context, req *heraldv1.GetSchemaRequest) (*heraldv1.GetSchemaResponse, error) {
	info, md, ok := s.reg.Lookup(req.GetName())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no message type named %q is known (GET /v1/schemas lists them)", req.GetName())
	}
	js, err := structpb.NewStruct(JSONSchema(md))
	if err != nil {
		return nil, status.Errorf(codes.Internal, "building the JSON Schema: %v", err)
	}
	return &heraldv1.GetSchemaResponse{
		Schema:      schemaOf(info),
		JsonSchema:  js,
		Descriptors: fileSet(md.ParentFile()),
	}, nil
}

func schemaOf(info Info) *heraldv1.Schema {
	src := map[Source]heraldv1.SchemaSource{
		Builtin: heraldv1.SchemaSource_SCHEMA_SOURCE_BUILTIN,
		File:    heraldv1.SchemaSource_SCHEMA_SOURCE_FILE,
		Pushed:  heraldv1.SchemaSource_SCHEMA_SOURCE_PUSHED,
	}[info.Source]
	return &heraldv1.Schema{Name: info.Name, File: info.File, Source: src}
}

// fileSet returns fd and its transitive imports, imports first.
func fileSet(fd protoreflect.FileDescriptor) *descriptorpb.FileDescriptorSet {
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var walk func(fd protoreflect.FileDescriptor)
	walk = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := range imports.Len() {
			walk(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	walk(fd)
	return set
}
