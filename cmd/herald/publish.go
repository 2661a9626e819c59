package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/schema"
)

const publishSynopsis = `Publishes one event over gRPC and prints its id. The payload is given as
JSON (--data) of the protobuf message named by --type, e.g.

  herald publish --topic orders.eu --type orders.v1.OrderPlaced \
    --data '{"orderId":"ord-1","customer":"Ada","totalCents":"4200","currency":"EUR"}'

Known types: the protobuf well-known types (google.protobuf.Struct, ...) and
whatever the server knows besides: the example schemas (orders.v1.OrderPlaced,
monitoring.v1.ServerStats, chat.v1.ChatMessage) on a server run with --demo,
and the types of its --descriptors and of herald schemas push.`

func publish(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("publish", publishSynopsis, stderr)
	var dial dialFlags
	dial.register(fs)
	topic := fs.String("topic", "", "topic to publish to, e.g. orders.eu (required)")
	typ := fs.String("type", "", "full protobuf name of the payload message, e.g. orders.v1.OrderPlaced (required)")
	data := fs.String("data", "{}", "the payload as JSON (protojson) of --type")
	eventType := fs.String("event-type", "", "SSE event name, when it should differ from --type")
	key := fs.String("idempotency-key", "", "key that makes retries of this publish produce one event")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	tok := fs.String("token", "", "bearer token allowing the topic (see herald token)")
	var attrs config.StringList
	fs.Var(&attrs, "attr", "attribute `key=value`; may repeat")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *topic == "" || *typ == "" {
		fs.Usage()
		return errors.New("publish: --topic and --type are required")
	}
	conn, err := dial.dial()
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(withToken(ctx, *tok), *timeout)
	defer cancel()
	req, err := buildRequest(ctx, conn, *topic, *typ, *data, *eventType, *key, attrs)
	if err != nil {
		return err
	}
	resp, err := heraldv1.NewPublisherServiceClient(conn).Publish(ctx, req)
	if err != nil {
		s := status.Convert(err)
		return fmt.Errorf("publish: %s: %s", s.Code(), s.Message())
	}
	if resp.GetDuplicate() {
		fmt.Fprintln(stdout, resp.GetId(), "(duplicate: already published with this idempotency key)")
		return nil
	}
	fmt.Fprintln(stdout, resp.GetId())
	return nil
}

func buildRequest(ctx context.Context, conn grpc.ClientConnInterface, topic, typ, data, eventType, key string, attrs []string) (*heraldv1.PublishRequest, error) {
	types, err := schema.NewBuiltin()
	if err != nil {
		return nil, err
	}
	mt, err := types.FindMessageByName(protoreflect.FullName(typ))
	if err != nil {
		// Not a well-known type: the server may know it (an example
		// schema with --demo, from files, or pushed), and its version is
		// the one it checks payloads against.
		if mt, err = remoteType(ctx, conn, typ); err != nil {
			return nil, fmt.Errorf("publish: --type %q is not a known message type: %v", typ, err)
		}
	}
	msg := mt.New().Interface()
	if err := (protojson.UnmarshalOptions{Resolver: types}).Unmarshal([]byte(data), msg); err != nil {
		return nil, fmt.Errorf("publish: --data is not a valid %s: %v", typ, err)
	}
	payload, err := anypb.New(msg)
	if err != nil {
		return nil, err
	}
	req := &heraldv1.PublishRequest{Topic: topic, Payload: payload, Type: eventType, IdempotencyKey: key}
	for _, a := range regroup(attrs) {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return nil, fmt.Errorf("publish: --attr %q: want key=value", a)
		}
		if req.Attributes == nil {
			req.Attributes = map[string]string{}
		}
		req.Attributes[k] = v
	}
	return proto.CloneOf(req), nil
}

// withToken sends tok as the bearer token of every call made with ctx.
func withToken(ctx context.Context, tok string) context.Context {
	if tok == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}
