package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

// The payload type of every event the soak publishes, pushed at start:
//
//	package soak.v1;
//	message Tick { int32 n = 1; string region = 2; string note = 3; }
const (
	tickType = "soak.v1.Tick"
	tickURL  = "type.googleapis.com/" + tickType
)

// regions are the values of Tick.region, one of the filters' keys.
var regions = []string{"eu", "us", "ap", "sa"}

// maxEvolvingFields bounds the pushed type that grows: after this many
// changes, pushes send the same file again (which changes nothing), so
// that the registry's size stops growing on its own account.
const maxEvolvingFields = 200

func tickFile() *descriptorpb.FileDescriptorProto {
	field := func(name string, n int32, t descriptorpb.FieldDescriptorProto_Type) *descriptorpb.FieldDescriptorProto {
		return &descriptorpb.FieldDescriptorProto{
			Name: proto.String(name), Number: proto.Int32(n), Type: t.Enum(),
			Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), JsonName: proto.String(name),
		}
	}
	return &descriptorpb.FileDescriptorProto{
		Name: proto.String("soak/v1/tick.proto"), Package: proto.String("soak.v1"), Syntax: proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("Tick"),
			Field: []*descriptorpb.FieldDescriptorProto{
				field("n", 1, descriptorpb.FieldDescriptorProto_TYPE_INT32),
				field("region", 2, descriptorpb.FieldDescriptorProto_TYPE_STRING),
				field("note", 3, descriptorpb.FieldDescriptorProto_TYPE_STRING),
			},
		}},
	}
}

// evolvingFile is soak/v1/evolving.proto with message Evolving of fields
// f1 … fn (at least one): each version adds a field to the one before, a
// compatible change.
func evolvingFile(n int) *descriptorpb.FileDescriptorProto {
	msg := &descriptorpb.DescriptorProto{Name: proto.String("Evolving")}
	for i := 1; i <= max(n, 1); i++ {
		name := fmt.Sprintf("f%d", i)
		msg.Field = append(msg.Field, &descriptorpb.FieldDescriptorProto{
			Name: proto.String(name), Number: proto.Int32(int32(i)), JsonName: proto.String(name),
			Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
		})
	}
	return &descriptorpb.FileDescriptorProto{
		Name: proto.String("soak/v1/evolving.proto"), Package: proto.String("soak.v1"), Syntax: proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{msg},
	}
}

// tickPayload is a Tick as an Any, encoded by hand (the type exists only
// as the descriptor above).
func tickPayload(n int32, region, note string) *anypb.Any {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(n))
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, region)
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendString(b, note)
	return &anypb.Any{TypeUrl: tickURL, Value: b}
}

// withToken adds a bearer token to a gRPC call's context.
func withToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// pusher pushes schemas in turn over gRPC and REST.
type pusher struct {
	srv    *server
	st     *stats
	schema heraldv1.SchemaServiceClient
	http   *http.Client
	fields int // fields of the last Evolving pushed
	n      int // pushes made
}

func newPusher(srv *server, st *stats, conn *grpc.ClientConn) *pusher {
	return &pusher{srv: srv, st: st, schema: heraldv1.NewSchemaServiceClient(conn), http: &http.Client{Timeout: 30 * time.Second}}
}

// pushTick registers the payload type before anything is published.
func (p *pusher) pushTick(ctx context.Context) error {
	set := &descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{tickFile(), evolvingFile(1)}}
	ctx = withToken(ctx, p.srv.token("soak-schemas", schemaGrants, time.Hour))
	if _, err := p.schema.RegisterSchemas(ctx, &heraldv1.RegisterSchemasRequest{Descriptors: set}); err != nil {
		return fmt.Errorf("pushing %s: %w", tickType, err)
	}
	p.fields = 1
	return nil
}

// push makes one push: over REST and gRPC in turn, every other one adding
// a field to Evolving (up to maxEvolvingFields), the others sending the
// same file again.
func (p *pusher) push(ctx context.Context) {
	p.n++
	next := p.fields
	if p.n%2 == 0 && next < maxEvolvingFields {
		next++
	}
	set := &descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{evolvingFile(next)}}
	token := p.srv.token("soak-schemas", schemaGrants, time.Minute)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var changed int
	if p.n%2 == 1 {
		body, err := protojson.Marshal(&heraldv1.RegisterSchemasRequest{Descriptors: set})
		if err != nil {
			p.st.fail("schema push (REST)", err)
			return
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+p.srv.http+"/v1/schemas", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := p.http.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				p.st.fail("schema push (REST)", err)
			}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			p.st.fail("schema push (REST)", fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b)))
			return
		}
		var r heraldv1.RegisterSchemasResponse
		if err := protojson.Unmarshal(b, &r); err != nil {
			p.st.fail("schema push (REST)", fmt.Errorf("answer %s: %w", b, err))
			return
		}
		changed = len(r.GetAdded()) + len(r.GetUpdated())
		p.st.inc(cSchemaREST)
	} else {
		r, err := p.schema.RegisterSchemas(withToken(ctx, token), &heraldv1.RegisterSchemasRequest{Descriptors: set})
		if err != nil {
			if ctx.Err() == nil {
				p.st.fail("schema push (gRPC)", err)
			}
			return
		}
		changed = len(r.GetAdded()) + len(r.GetUpdated())
		p.st.inc(cSchemaGRPC)
	}
	if next > p.fields {
		if changed == 0 {
			p.st.fail("schema push", fmt.Errorf("adding field f%d to soak.v1.Evolving: the answer names no added or updated type", next))
		}
		p.st.inc(cSchemaChanged)
	}
	p.fields = next
}
