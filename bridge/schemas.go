package bridge

import (
	"context"
	"fmt"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/auth"
)

// schemaService serves Config.Schemas. Pushing schemas takes credentials
// with a schemas grant (auth.Permissions.Schemas, the "schemas" list of a
// token's claim); the service behind checks every package a push adds to
// or changes against that grant, from the permissions this puts in the
// push's context (auth.NewContext). Listing and reading schemas is open.
// Errors get their codes here, as the publish path's do.
type schemaService struct {
	heraldv1.UnimplementedSchemaServiceServer
	inner heraldv1.SchemaServiceServer
	auth  auth.Authenticator // nil: everything allowed
}

// openPushes are the permissions of a pusher when the server has no
// Authenticator: every package (the service still refuses the reserved
// ones).
var openPushes = auth.Permissions{Publish: auth.Everything, Subscribe: auth.Everything, Schemas: auth.Everything}

// authorizeRegister authenticates the caller of a push and checks that it
// may push schemas at all; it returns the permissions the service checks
// each package against.
func (s *schemaService) authorizeRegister(ctx context.Context, creds auth.Credentials) (auth.Permissions, error) {
	if s.auth == nil {
		return openPushes, nil
	}
	perms, err := s.auth.Authenticate(ctx, creds)
	if err != nil {
		return auth.Permissions{}, err
	}
	if len(perms.Schemas) == 0 {
		const need = `pushing schemas takes a token whose "schemas" claim lists the packages it may push (herald token --schemas 'shop.>')`
		if creds.Empty() {
			return auth.Permissions{}, fmt.Errorf("%w: %s", auth.ErrUnauthenticated, need)
		}
		return auth.Permissions{}, fmt.Errorf("%w: %s; these credentials list none", auth.ErrPermissionDenied, need)
	}
	return perms, nil
}

func (s *schemaService) RegisterSchemas(ctx context.Context, req *heraldv1.RegisterSchemasRequest) (*heraldv1.RegisterSchemasResponse, error) {
	// The REST front door (rest.go) authorized the call and put the
	// permissions in the context; a gRPC call gets them here.
	_, viaREST := accessFrom(ctx)
	if _, ok := auth.FromContext(ctx); !viaREST || !ok {
		perms, err := s.authorizeRegister(ctx, grpcCredentials(ctx))
		if err != nil {
			return nil, grpcError(err)
		}
		ctx = auth.NewContext(ctx, perms)
	}
	resp, err := s.inner.RegisterSchemas(ctx, req)
	if err != nil {
		return nil, grpcError(err)
	}
	return resp, nil
}

func (s *schemaService) ListSchemas(ctx context.Context, req *heraldv1.ListSchemasRequest) (*heraldv1.ListSchemasResponse, error) {
	resp, err := s.inner.ListSchemas(ctx, req)
	if err != nil {
		return nil, grpcError(err)
	}
	return resp, nil
}

func (s *schemaService) GetSchema(ctx context.Context, req *heraldv1.GetSchemaRequest) (*heraldv1.GetSchemaResponse, error) {
	resp, err := s.inner.GetSchema(ctx, req)
	if err != nil {
		return nil, grpcError(err)
	}
	return resp, nil
}
