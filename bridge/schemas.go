package bridge

import (
	"context"
	"fmt"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/auth"
)

// schemaService serves Config.Schemas: only publishers may register schemas
// (callers whose credentials allow publishing to some topic); listing and
// reading them is open. Errors get their codes here, as the publish path's
// do.
type schemaService struct {
	heraldv1.UnimplementedSchemaServiceServer
	inner heraldv1.SchemaServiceServer
	auth  auth.Authenticator // nil: everything allowed
}

// authorizeRegister checks that creds may register schemas.
func (s *schemaService) authorizeRegister(ctx context.Context, creds auth.Credentials) error {
	if s.auth == nil {
		return nil
	}
	perms, err := s.auth.Authenticate(ctx, creds)
	if err == nil && len(perms.Publish) == 0 {
		err = fmt.Errorf("%w: registering schemas takes a token that may publish", auth.ErrPermissionDenied)
		if creds.Empty() {
			err = fmt.Errorf("%w: registering schemas takes a token that may publish", auth.ErrUnauthenticated)
		}
	}
	return err
}

func (s *schemaService) RegisterSchemas(ctx context.Context, req *heraldv1.RegisterSchemasRequest) (*heraldv1.RegisterSchemasResponse, error) {
	if _, ok := accessFrom(ctx); !ok { // not authorized by the REST front door (rest.go)
		if err := s.authorizeRegister(ctx, grpcCredentials(ctx)); err != nil {
			return nil, grpcError(err)
		}
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
