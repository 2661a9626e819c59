package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
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

const publishSynopsis = `Publishes one event over gRPC and prints its id on stdout. The payload is
given as JSON (--data) of the protobuf message named by --type, e.g.

  herald publish --topic orders.eu --type orders.v1.OrderPlaced \
    --data '{"orderId":"ord-1","customer":"Ada","totalCents":"4200","currency":"EUR"}'

Known types: the protobuf well-known types (google.protobuf.Struct, ...) and
whatever the server knows besides: the example schemas (orders.v1.OrderPlaced,
monitoring.v1.ServerStats, chat.v1.ChatMessage) on a server run with --demo,
and the types of its --descriptors and of herald schemas push.

A retry with the same --idempotency-key publishes nothing new: it prints the
first publish's id on stdout, and a note that it is a duplicate on stderr.

--delete marks the topic's state as deleted instead (a game server shut down):
subscribers get an event of type herald.deleted, and the topic leaves later
snapshots until it is published to again. It takes no --type or --data:

  herald publish --topic monitoring.eu-1 --delete`

type publishFlags struct {
	dial      dialFlags
	topic     string
	typ       string
	data      string
	eventType string
	key       string
	timeout   time.Duration
	token     string
	attrs     config.StringList
	delete    bool
}

func newPublishCmd() *cobra.Command {
	var p publishFlags
	cmd := &cobra.Command{
		Use:   "publish [flags]",
		Short: "Publish one event over gRPC and print its id",
		Long:  publishSynopsis,
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return p.run(cmd, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	p.dial.register(fs)
	fs.StringVar(&p.topic, "topic", "", "topic to publish to, e.g. orders.eu (required)")
	fs.StringVar(&p.typ, "type", "", "full protobuf name of the payload message, e.g. orders.v1.OrderPlaced (required)")
	fs.StringVar(&p.data, "data", "{}", "the payload as JSON (protojson) of --type")
	fs.StringVar(&p.eventType, "event-type", "", "SSE event name, when it should differ from --type")
	fs.StringVar(&p.key, "idempotency-key", "", "key that makes retries of this publish produce one event")
	fs.DurationVar(&p.timeout, "timeout", 10*time.Second, "give up after this long")
	fs.StringVar(&p.token, "token", "", "bearer token allowing the topic (see herald token)")
	fs.Var(&p.attrs, "attr", "attribute `key=value`; may repeat")
	fs.BoolVar(&p.delete, "delete", false, "mark the topic's state as deleted (herald.deleted) instead of publishing a payload")
	markSettings(cmd)
	return cmd
}

func (p *publishFlags) run(cmd *cobra.Command, stdout, stderr io.Writer) error {
	if p.delete {
		return p.runDelete(cmd, stdout, stderr)
	}
	if p.topic == "" || p.typ == "" {
		return usagef(cmd, "--topic and --type are required")
	}
	attrs, err := parseAttrs(p.attrs)
	if err != nil {
		return usagef(cmd, "%v", err)
	}
	conn, err := p.dial.dial()
	if err != nil {
		return asUsage(fmt.Errorf("publish: %w", err))
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(withToken(cmd.Context(), p.token), p.timeout)
	defer cancel()
	msg, err := p.payload(ctx, cmd, conn)
	if err != nil {
		return err
	}
	payload, err := anypb.New(msg)
	if err != nil {
		return err
	}
	req := &heraldv1.PublishRequest{Topic: p.topic, Payload: payload, Type: p.eventType, IdempotencyKey: p.key, Attributes: attrs}
	resp, err := heraldv1.NewPublisherServiceClient(conn).Publish(ctx, proto.CloneOf(req))
	if err != nil {
		return fmt.Errorf("publish: %s", p.dial.rpcError(ctx, err))
	}
	fmt.Fprintln(stdout, resp.GetId())
	if resp.GetDuplicate() {
		fmt.Fprintf(stderr, "herald: duplicate: %s was already published with idempotency key %q; nothing new was published\n", resp.GetId(), p.key)
	}
	return nil
}

// runDelete marks --topic's state as deleted.
func (p *publishFlags) runDelete(cmd *cobra.Command, stdout, stderr io.Writer) error {
	if p.topic == "" {
		return usagef(cmd, "--topic is required")
	}
	for _, name := range []string{"type", "data", "event-type", "attr"} {
		if cmd.Flags().Changed(name) {
			return usagef(cmd, "--delete takes no --%s: a deletion carries no payload", name)
		}
	}
	conn, err := p.dial.dial()
	if err != nil {
		return asUsage(fmt.Errorf("publish: %w", err))
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(withToken(cmd.Context(), p.token), p.timeout)
	defer cancel()
	req := &heraldv1.DeleteTopicStateRequest{Topic: p.topic, IdempotencyKey: p.key}
	resp, err := heraldv1.NewPublisherServiceClient(conn).DeleteTopicState(ctx, req)
	if err != nil {
		return fmt.Errorf("publish --delete: %s", p.dial.rpcError(ctx, err))
	}
	fmt.Fprintln(stdout, resp.GetId())
	if resp.GetDuplicate() {
		fmt.Fprintf(stderr, "herald: duplicate: %s already deleted the state with idempotency key %q; nothing new was published\n", resp.GetId(), p.key)
	}
	return nil
}

// payload returns --data decoded as a --type. A type that is not a
// well-known one is asked of the server (an example schema with --demo,
// from files, or pushed), whose version is the one it checks payloads
// against.
func (p *publishFlags) payload(ctx context.Context, cmd *cobra.Command, conn grpc.ClientConnInterface) (proto.Message, error) {
	types, err := schema.NewBuiltin()
	if err != nil {
		return nil, err
	}
	mt, err := types.FindMessageByName(protoreflect.FullName(p.typ))
	if err != nil {
		if mt, err = remoteType(ctx, conn, p.typ); err != nil {
			if status.Code(err) == codes.Unknown || status.Code(err) == codes.NotFound {
				return nil, fmt.Errorf("publish: --type %q is not a known message type: %s", p.typ, statusText(err))
			}
			return nil, fmt.Errorf("publish: looking up --type %s: %s", p.typ, p.dial.rpcError(ctx, err))
		}
	}
	msg := mt.New().Interface()
	if err := (protojson.UnmarshalOptions{Resolver: types}).Unmarshal([]byte(p.data), msg); err != nil {
		return nil, usagef(cmd, "--data is not a valid %s: %v", p.typ, err)
	}
	return msg, nil
}

// parseAttrs reads the --attr items, whose values may hold commas when
// they come from the environment (regroup).
func parseAttrs(items []string) (map[string]string, error) {
	var attrs map[string]string
	for _, a := range regroup(items) {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return nil, fmt.Errorf("--attr %q: want key=value", a)
		}
		if attrs == nil {
			attrs = map[string]string{}
		}
		attrs[k] = v
	}
	return attrs, nil
}

// withToken sends tok as the bearer token of every call made with ctx.
func withToken(ctx context.Context, tok string) context.Context {
	if tok == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// regroup undoes the environment's split of a repeatable flag whose items
// are key=value with commas in the value (config.SplitList): an item without
// "=" continues the one before it.
func regroup(items []string) []string {
	var out []string
	for _, item := range items {
		if n := len(out); n > 0 && !strings.Contains(item, "=") {
			out[n-1] += "," + item
			continue
		}
		out = append(out, item)
	}
	return out
}
