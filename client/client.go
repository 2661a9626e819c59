package client

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

// A Client is a connection to Herald's gRPC API: a node, or a load balancer
// in front of several nodes sharing a broker. It is safe for concurrent use;
// create one per process and Close it when done.
type Client struct {
	conn *grpc.ClientConn
	pub  heraldv1.PublisherServiceClient
	sub  heraldv1.SubscriberServiceClient
}

// An Option configures New.
type Option func(*options)

type options struct {
	tls    *tls.Config
	useTLS bool
	token  string
	dial   []grpc.DialOption
}

// WithTLS connects with TLS. A nil config verifies the server against the
// system's roots under the target's host name; pass a config to use other
// roots or a client certificate. Without WithTLS the connection is
// plaintext, as for a Herald on localhost or behind a TLS-terminating
// sidecar.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) {
		o.useTLS = true
		if cfg != nil {
			o.tls = cfg.Clone()
		}
	}
}

// WithToken sends "authorization: Bearer <token>" with every call. A token
// is a secret, so without WithTLS New accepts it only for a target on this
// machine (localhost, a loopback address, a unix socket: a local Herald or
// a TLS-terminating sidecar) and refuses it for any other.
func WithToken(token string) Option {
	return func(o *options) { o.token = token }
}

// WithDialOptions adds gRPC dial options, applied after the client's own:
// keepalive parameters, interceptors, a custom dialer, a service config.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dial = append(o.dial, opts...) }
}

// serviceConfig retries Publish on UNAVAILABLE. Publish always carries an
// idempotency key, so a retry of a publish that did reach the broker
// returns the first id instead of creating a second event.
const serviceConfig = `{"methodConfig": [{
  "name": [{"service": "herald.v1.PublisherService", "method": "Publish"}],
  "retryPolicy": {
    "maxAttempts": 4,
    "initialBackoff": "0.1s",
    "maxBackoff": "1s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"]
  }
}]}`

// maxRecvMsgSize admits the largest events a Herald may be configured to
// accept (1 MiB by default) with room to spare.
const maxRecvMsgSize = 64 << 20

// retryBufferSize lets gRPC keep a copy of requests up to the size of the
// largest event, so that large events are retried too (its default, 256
// KiB, would silently exclude them).
const retryBufferSize = 4 << 20

// streamWindow and connWindow are the flow-control windows the client
// grants Herald: bytes of answers and subscribed events in flight on one
// stream and on the connection. 1 MiB per stream carries about 10 MiB/s
// of events over a 100 ms round trip.
const (
	streamWindow = 1 << 20
	connWindow   = 4 << 20
)

// New returns a client for target, a gRPC target such as "localhost:9090"
// or "dns:///herald.internal:9090". It checks the options and does no I/O:
// the connection is made on the first call and re-made whenever it breaks.
func New(target string, opts ...Option) (*Client, error) {
	if target == "" {
		return nil, errors.New("herald client: target is empty (want host:port, e.g. localhost:9090)")
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	dial := []grpc.DialOption{
		grpc.WithDefaultServiceConfig(serviceConfig),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsgSize), grpc.MaxRetryRPCBufferSize(retryBufferSize)),
		// Fixed windows, as Herald's listener grants. grpc-go's dynamic
		// window sends a bandwidth probe (a PING, and a WINDOW_UPDATE)
		// for nearly every answer on a stream of small events, and Herald
		// has to read and answer each one.
		grpc.WithStaticStreamWindowSize(streamWindow),
		grpc.WithStaticConnWindowSize(connWindow),
	}
	if o.useTLS {
		cfg := o.tls
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		dial = append(dial, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	} else {
		dial = append(dial, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if o.token != "" {
		if !o.useTLS && !isLocal(target) {
			return nil, fmt.Errorf("herald client: WithToken needs WithTLS for %s: a token is sent in plaintext only to this machine", target)
		}
		if strings.ContainsAny(o.token, "\r\n") {
			return nil, errors.New("herald client: WithToken: the token contains a line break")
		}
		dial = append(dial, grpc.WithPerRPCCredentials(bearerToken{token: o.token, tls: o.useTLS}))
	}
	dial = append(dial, o.dial...)
	conn, err := grpc.NewClient(target, dial...)
	if err != nil {
		return nil, fmt.Errorf("herald client: %w", err)
	}
	return &Client{
		conn: conn,
		pub:  heraldv1.NewPublisherServiceClient(conn),
		sub:  heraldv1.NewSubscriberServiceClient(conn),
	}, nil
}

// Close closes the connection. Calls in progress, stream publishers and
// subscriptions on it end with CANCELED; close publishers first to let
// them deliver what they hold.
func (c *Client) Close() error { return c.conn.Close() }

// Conn returns the underlying gRPC connection, for calling the generated
// herald.v1 clients directly.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

type bearerToken struct {
	token string
	tls   bool
}

func (t bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + t.token}, nil
}

// RequireTransportSecurity is false only for the local plaintext targets
// New allowed.
func (t bearerToken) RequireTransportSecurity() bool { return t.tls }

// isLocal reports whether a gRPC target names this machine: a unix socket,
// localhost or a loopback address, with or without a dns or passthrough
// scheme.
func isLocal(target string) bool {
	if strings.HasPrefix(target, "unix:") || strings.HasPrefix(target, "unix-abstract:") {
		return true
	}
	if i := strings.Index(target, ":///"); i >= 0 {
		target = target[i+4:]
	}
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		host = target
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && ip.IsLoopback()
}

// A PublishOption sets an optional field of a published event.
type PublishOption func(*heraldv1.PublishRequest)

// WithType sets the event type: the SSE event name browsers listen for with
// addEventListener(type). Default: the message's full name, e.g.
// "orders.v1.OrderPlaced". Up to 128 bytes of A-Z a-z 0-9 - . _ :; the
// "herald." prefix is reserved.
func WithType(eventType string) PublishOption {
	return func(r *heraldv1.PublishRequest) { r.Type = eventType }
}

// WithAttributes adds string attributes to the event (backend subscribers
// receive them; browsers do not). Several WithAttributes merge.
func WithAttributes(attrs map[string]string) PublishOption {
	return func(r *heraldv1.PublishRequest) {
		if r.Attributes == nil {
			r.Attributes = make(map[string]string, len(attrs))
		}
		for k, v := range attrs {
			r.Attributes[k] = v
		}
	}
}

// WithIdempotencyKey sets the event's idempotency key (at most 128 bytes):
// publishing again with the same key on the same topic within the server's
// idempotency window (2 minutes by default) creates no second event and
// returns the first one's id. Without it the client generates a random key
// per event, which makes its own retries safe; set your own (an order id, a
// message id) to make your retries safe too, across restarts.
func WithIdempotencyKey(key string) PublishOption {
	return func(r *heraldv1.PublishRequest) { r.IdempotencyKey = key }
}

// newRequest builds the request for msg, its payload wrapped in an Any.
func newRequest(topic string, msg proto.Message, opts []PublishOption) (*heraldv1.PublishRequest, error) {
	if msg == nil {
		return nil, status.Error(codes.InvalidArgument, "herald client: message is nil")
	}
	payload, err := anypb.New(msg)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "herald client: cannot encode %T: %v", msg, err)
	}
	req := &heraldv1.PublishRequest{Topic: topic, Payload: payload}
	for _, opt := range opts {
		opt(req)
	}
	return req, nil
}

// newKeyPrefix returns a random idempotency key prefix, unique per
// process-lifetime object (130 random bits).
func newKeyPrefix() string { return rand.Text() }

// Publish publishes msg to topic and returns the event's id once the
// broker has accepted it. The message is sent as a google.protobuf.Any;
// its type must be one the server knows.
//
// Publish retries by itself, up to 4 attempts over about a second, when
// the server is UNAVAILABLE; every event carries an idempotency key
// (generated unless WithIdempotencyKey is given), so a retry never creates
// a second event. The error, if any, carries a gRPC code (status.Code):
// see Retryable and the package documentation.
func (c *Client) Publish(ctx context.Context, topic string, msg proto.Message, opts ...PublishOption) (id string, err error) {
	req, err := newRequest(topic, msg, opts)
	if err != nil {
		return "", err
	}
	if req.IdempotencyKey == "" {
		req.IdempotencyKey = newKeyPrefix()
	}
	resp, err := c.pub.Publish(ctx, req)
	if err != nil {
		return "", err
	}
	return resp.GetId(), nil
}

// Retryable reports whether a publish that failed with err may succeed if
// made again with the same idempotency key, which makes the retry safe:
//   - UNAVAILABLE: the server or its broker cannot be reached, or the
//     server is shutting down;
//   - DEADLINE_EXCEEDED: retry with a new deadline; the first attempt may
//     or may not have been accepted;
//   - RESOURCE_EXHAUSTED from the server's rate limit (it says when to
//     retry: wait RetryDelay(err) first). Other RESOURCE_EXHAUSTED errors,
//     such as a message over gRPC's size limit, are final.
//
// Every other code is final: INVALID_ARGUMENT (a bad topic, type,
// attribute or payload, or an event over the size limit; the message names
// the problem), UNAUTHENTICATED, PERMISSION_DENIED, UNIMPLEMENTED,
// CANCELED, INTERNAL.
func Retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	case codes.ResourceExhausted:
		_, ok := retryInfo(err)
		return ok
	}
	return false
}

// RetryDelay returns how long the server asked the caller to wait before
// retrying (the RetryInfo detail of a rate-limit error), or 0.
func RetryDelay(err error) time.Duration {
	d, _ := retryInfo(err)
	return d
}

func retryInfo(err error) (time.Duration, bool) {
	st, ok := status.FromError(err)
	if !ok {
		return 0, false
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}

// DeleteTopicState marks topic's state as deleted (a game server shut
// down): subscribers get an event of type "herald.deleted" (Event.Deleted
// in Subscribe), and the topic leaves later snapshots until it is
// published to again. It takes a token that may publish to the topic.
// Like Publish it sends an idempotency key, so a retry deletes once.
func (c *Client) DeleteTopicState(ctx context.Context, topic string) (id string, err error) {
	resp, err := c.pub.DeleteTopicState(ctx, &heraldv1.DeleteTopicStateRequest{Topic: topic, IdempotencyKey: newKeyPrefix()})
	if err != nil {
		return "", err
	}
	return resp.GetId(), nil
}
