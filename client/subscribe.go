package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

// An Event is an event received by Subscribe.
type Event struct {
	// ID is the event's id, increasing; pass it to WithLastEventID to
	// resume after it. It is the id browsers see over SSE.
	ID string
	// Topic is the topic the event was published to.
	Topic string
	// Type is the event type, by default the payload's full message name
	// ("orders.v1.OrderPlaced").
	Type string
	// Payload is the payload as its Go type (assert it, e.g.
	// ev.Payload.(*ordersv1.OrderPlaced)) when the resolver knows the type
	// (by default the types linked into the program), otherwise the raw
	// *anypb.Any as received.
	Payload proto.Message
	// Attributes are the publisher's attributes; may be nil.
	Attributes map[string]string
	// Time is when the broker accepted the event.
	Time time.Time
	// Deleted reports that the topic's state was deleted (DeleteTopicState):
	// Type is "herald.deleted", and there is no payload. Forget what you
	// keep for the topic.
	Deleted bool
}

// A GapError reports that events may have been missed: the subscription
// resumed after LastEventID, but the server's history no longer reaches
// back that far (or the id is from an earlier history, or not an id of
// this server). It is yielded before the events that are still retained,
// and the sequence goes on; refetch whatever state you derive from the
// events, or stop.
type GapError struct {
	// LastEventID is the id the subscription resumed after.
	LastEventID string
	// Reason is the server's explanation.
	Reason string
}

func (e *GapError) Error() string {
	return fmt.Sprintf("herald client: events after %q may have been missed: %s", e.LastEventID, e.Reason)
}

// A SubscribeOption configures Subscribe.
type SubscribeOption func(*subscribeOptions)

type subscribeOptions struct {
	lastEventID string
	filter      string
	snapshot    bool
	onSynced    func(topics int, lastEventID string)
	resolver    protoregistry.MessageTypeResolver
	onReconnect func(err error, wait time.Duration)
	minBackoff  time.Duration
	maxBackoff  time.Duration
}

// WithLastEventID starts the subscription after the event with this id:
// the retained events after it are delivered first, then live ones.
// Without it, only events accepted after the subscription starts.
func WithLastEventID(id string) SubscribeOption {
	return func(o *subscribeOptions) { o.lastEventID = id }
}

// WithFilter sends only the events for which the CEL expression expr is
// true: it sees each event's payload (fields by their protobuf names),
// type, topic and attributes, e.g.
// `payload.total_cents > 10000 && payload.currency == "EUR"`. Deletions
// always pass. A syntax error ends the subscription with INVALID_ARGUMENT.
func WithFilter(expr string) SubscribeOption {
	return func(o *subscribeOptions) { o.filter = expr }
}

// WithSnapshot starts the subscription with, for every topic it matches,
// the latest retained event, then live events with no gap and no
// duplicate in between; onSynced, when not nil, is called between the two
// with how many topics the snapshot held. A resumption (after a dropped
// connection, or WithLastEventID) takes no second snapshot unless the
// server's history no longer reaches back: then a *GapError is yielded and
// a fresh snapshot follows, so that the state you keep converges.
func WithSnapshot(onSynced func(topics int, lastEventID string)) SubscribeOption {
	return func(o *subscribeOptions) { o.snapshot, o.onSynced = true, onSynced }
}

// WithResolver resolves payload types with r instead of
// protoregistry.GlobalTypes (the types linked into the program). If r
// also implements protoregistry.ExtensionTypeResolver, it resolves
// extensions too.
func WithResolver(r protoregistry.MessageTypeResolver) SubscribeOption {
	return func(o *subscribeOptions) { o.resolver = r }
}

// OnResubscribe calls fn with the error that ended the stream and the wait
// before subscribing again, each time the subscription resumes, e.g. to
// log it.
func OnResubscribe(fn func(err error, wait time.Duration)) SubscribeOption {
	return func(o *subscribeOptions) { o.onReconnect = fn }
}

// Subscribe streams the events of topics (names or patterns: "*" matches
// one token, a final ">" the rest) over herald.v1.SubscriberService, for
// as long as the loop runs and ctx lasts:
//
//	for ev, err := range c.Subscribe(ctx, []string{"orders.>"}) {
//		if err != nil { ... }
//		order := ev.Payload.(*ordersv1.OrderPlaced)
//	}
//
// Per topic, events arrive in publish order, each once. When the stream
// breaks (the connection drops, the server shuts down, or it cut this
// subscriber off for falling behind), Subscribe subscribes again by itself,
// with backoff, resuming after the last event it yielded: nothing still
// retained is lost and nothing is repeated.
//
// The error values:
//   - *GapError: events may have been missed (see GapError). The sequence
//     goes on; check with errors.As.
//   - anything else: the subscription cannot go on, and it is the last
//     value: INVALID_ARGUMENT for a bad topic, or UNAUTHENTICATED,
//     PERMISSION_DENIED, UNIMPLEMENTED, INTERNAL, or CANCELED once the
//     Client is closed (status.Code tells which).
//
// When ctx ends the sequence ends without an error; check ctx.Err() if it
// matters.
func (c *Client) Subscribe(ctx context.Context, topics []string, opts ...SubscribeOption) iter.Seq2[*Event, error] {
	o := subscribeOptions{
		resolver:   protoregistry.GlobalTypes,
		minBackoff: 50 * time.Millisecond,
		maxBackoff: 5 * time.Second,
	}
	for _, opt := range opts {
		opt(&o)
	}
	topics = append([]string(nil), topics...)
	return func(yield func(*Event, error) bool) {
		last := o.lastEventID
		backoff := o.minBackoff
		for {
			err, progressed, stop := c.subscribeOnce(ctx, topics, &last, &o, yield)
			if stop || ctx.Err() != nil {
				return
			}
			if !retryableSubscribe(err) {
				yield(nil, err)
				return
			}
			if progressed {
				backoff = o.minBackoff
			}
			wait := backoff/2 + rand.N(backoff/2+1)
			backoff = min(2*backoff, o.maxBackoff)
			if o.onReconnect != nil {
				o.onReconnect(err, wait)
			}
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
	}
}

// subscribeOnce runs one Subscribe stream, yielding what it delivers and
// advancing *last. It returns why the stream ended, whether it delivered
// anything, and whether the consumer stopped.
func (c *Client) subscribeOnce(ctx context.Context, topics []string, last *string, o *subscribeOptions, yield func(*Event, error) bool) (err error, progressed, stop bool) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.sub.Subscribe(ctx, &heraldv1.SubscribeRequest{Topics: topics, LastEventId: *last, Filter: o.filter, Snapshot: o.snapshot})
	if err != nil {
		return err, false, false
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) { // the server never ends a stream cleanly
				err = status.Error(codes.Unavailable, "herald client: Subscribe stream ended")
			}
			return err, progressed, false
		}
		progressed = true
		switch m := resp.GetMessage().(type) {
		case *heraldv1.SubscribeResponse_Event:
			ev := o.event(m.Event)
			*last = ev.ID
			if !yield(ev, nil) {
				return nil, true, true
			}
		case *heraldv1.SubscribeResponse_Gap:
			if !yield(nil, &GapError{LastEventID: m.Gap.GetLastEventId(), Reason: m.Gap.GetReason()}) {
				return nil, true, true
			}
		case *heraldv1.SubscribeResponse_Deleted:
			*last = m.Deleted.GetId()
			if !yield(&Event{ID: m.Deleted.GetId(), Topic: m.Deleted.GetTopic(), Type: "herald.deleted", Deleted: true}, nil) {
				return nil, true, true
			}
		case *heraldv1.SubscribeResponse_Synced:
			// Resuming from here takes exactly the events after the
			// snapshot.
			*last = m.Synced.GetLastEventId()
			if o.onSynced != nil {
				o.onSynced(int(m.Synced.GetTopics()), m.Synced.GetLastEventId())
			}
		}
	}
}

func (o *subscribeOptions) event(e *heraldv1.Event) *Event {
	ev := &Event{
		ID:         e.GetId(),
		Topic:      e.GetTopic(),
		Type:       e.GetType(),
		Payload:    e.GetPayload(),
		Attributes: e.GetAttributes(),
		Time:       e.GetTime().AsTime(),
	}
	if e.GetPayload() == nil {
		ev.Payload = &anypb.Any{}
	} else if msg, err := o.unpack(e.GetPayload()); err == nil {
		ev.Payload = msg
	}
	return ev
}

func (o *subscribeOptions) unpack(a *anypb.Any) (proto.Message, error) {
	mt, err := o.resolver.FindMessageByURL(a.GetTypeUrl())
	if err != nil {
		return nil, err
	}
	msg := mt.New().Interface()
	var ext protoregistry.ExtensionTypeResolver = protoregistry.GlobalTypes
	if r, ok := o.resolver.(protoregistry.ExtensionTypeResolver); ok {
		ext = r
	}
	if err := (proto.UnmarshalOptions{Resolver: ext}).Unmarshal(a.GetValue(), msg); err != nil {
		return nil, err
	}
	return msg, nil
}

// retryableSubscribe reports whether a Subscribe stream that ended with
// err is resumed: the connection or the server went away (UNAVAILABLE) or
// the server cut a slow consumer (RESOURCE_EXHAUSTED). CANCELED is not:
// with the caller's context alive, it means the Client was closed.
func retryableSubscribe(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted, codes.Aborted:
		return true
	}
	return false
}
