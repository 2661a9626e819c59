// Package client is the Go client for Herald: it publishes typed events to
// Herald's gRPC API and subscribes to them from backend services.
//
// Herald carries protobuf events from backend services to browsers (as
// Server-Sent Events) and to other backends (over gRPC). A publisher hands
// Herald a protobuf message and a topic; this package wraps the message in
// a google.protobuf.Any, adds an idempotency key, and retries safely. A
// subscriber gets the events back as their Go types.
//
// # Connecting
//
// One Client per process, shared by every goroutine:
//
//	c, err := client.New("herald.internal:9090",
//		client.WithTLS(nil),            // verify against the system roots
//		client.WithToken(os.Getenv("HERALD_TOKEN")))
//	if err != nil { ... }
//	defer c.Close()
//
// New does no I/O; the connection is made on first use and re-made when it
// breaks. Without WithTLS the connection is plaintext (a Herald on
// localhost, or behind a TLS-terminating sidecar). WithToken sends
// "authorization: Bearer <token>" with every call (a JWT whose herald claim
// grants the topics; see docs/security.md); without TLS, only to a target on
// this machine. WithDialOptions passes any other gRPC dial option
// (keepalive, interceptors).
//
// # Publishing one event
//
//	id, err := c.Publish(ctx, "orders.eu", &ordersv1.OrderPlaced{OrderId: "o-1", ...},
//		client.WithIdempotencyKey("order-o-1"))
//
// Publish returns once the broker has accepted the event; id is the event's
// id, the one browsers see. The payload's type must be one the server knows
// (its schemas). The topic is dot-separated tokens of A-Z a-z 0-9 _ -.
// Options: WithType (the SSE event name, default the message's full name),
// WithAttributes, WithIdempotencyKey.
//
// # Publishing at a high rate
//
// A StreamPublisher sends events over one long-lived PublishStream, with at
// most MaxInFlight events unresolved; Publish blocks when that many are
// (back-pressure) and returns a Result, a future of the event's id:
//
//	p, err := c.NewStreamPublisher(ctx, client.MaxInFlight(1000))
//	if err != nil { ... }
//	for _, o := range orders {
//		r, err := p.Publish(ctx, "orders.eu", o)
//		if err != nil { ... }        // ctx ended, or p was closed
//		results = append(results, r) // or use the OnResult callback
//	}
//	if err := p.Close(); err != nil { ... } // delivers what is pending
//	for _, r := range results {
//		if r.Err() != nil { ... }
//	}
//
// Events are accepted in the order they were published. When the
// connection drops or the server restarts, the publisher reconnects and
// resends every event not yet acknowledged, in order; since every event
// carries an idempotency key (generated unless you give one), an event the
// server already had is not published twice. Each event is thus published
// exactly once, provided the reconnection happens within the server's
// idempotency window (2 minutes by default; ReconnectTimeout, 1 minute by
// default, gives up before that and fails the pending events).
//
// # Subscribing
//
// Subscribe returns an iterator over the events of topics or patterns ("*"
// matches one token, a final ">" the rest), each payload as its Go type:
//
//	for ev, err := range c.Subscribe(ctx, []string{"orders.>"}, client.WithLastEventID(saved)) {
//		var gap *client.GapError
//		switch {
//		case errors.As(err, &gap):
//			refetchOrders() // events were missed: rebuild what you derive from them
//			continue
//		case err != nil:
//			return err // final: a bad topic, or not allowed
//		}
//		order, ok := ev.Payload.(*ordersv1.OrderPlaced)
//		...
//		saved = ev.ID
//	}
//
// Subscribe resumes by itself after a dropped connection, a server shutdown
// or being cut off as a slow consumer (a subscriber whose queue of events
// on the server overflows is disconnected, so that it slows nobody down),
// after the last event it yielded: nothing still retained is lost, nothing
// is repeated. Persist ev.ID and pass it to WithLastEventID to resume across
// restarts of your service. Payloads of types not linked into your program
// (nor known to WithResolver) arrive as *anypb.Any.
//
// # Errors and retries
//
// Every error from the server carries a gRPC code, status.Code(err), and a
// message naming the problem. What to do depends on the code:
//
//   - UNAVAILABLE: the server or its broker cannot be reached right now, or
//     the server is shutting down. Retry with the same idempotency key.
//     Publish already retries it (4 attempts over about a second); the
//     StreamPublisher reconnects and resends; Subscribe resumes.
//   - DEADLINE_EXCEEDED: your deadline passed; the event may or may not have
//     been accepted. Retry with a new deadline and the same idempotency key,
//     which makes the retry harmless either way.
//   - RESOURCE_EXHAUSTED, publishing: over the publish rate allowed to your
//     token. Wait RetryDelay(err), then retry with the same idempotency key.
//     Subscribing: you fell behind and were cut off; subscribe again after
//     the last id, which Subscribe does itself.
//   - INVALID_ARGUMENT: a bad topic or pattern, type, attribute or payload
//     (a type the server does not know, bytes that do not parse), or an
//     event over the size limit. Final: fix the event; retrying fails the
//     same way.
//   - UNAUTHENTICATED, PERMISSION_DENIED: a missing, wrong or expired token,
//     or a topic it does not grant. Final for this token; streams opened
//     with a token end with UNAUTHENTICATED when it expires, and need a
//     Client with a fresh one.
//   - UNIMPLEMENTED, INTERNAL, CANCELED: final.
//
// Retryable reports whether a publish error is worth retrying, RetryDelay
// how long the server asked to wait. The StreamPublisher does not retry
// events the server rejects (its per-event errors, a rate limit included):
// resending one later would put it after events published since; publish
// it again yourself with its Result's IdempotencyKey. Idempotency
// keys are what make retries safe: a publish retried with the same key on
// the same topic, within the idempotency window, returns the first event's
// id and creates nothing. Give your own key (an order id, a message id) when
// your service itself may retry, e.g. after a restart; otherwise the
// generated ones cover the client's own retries.
package client
