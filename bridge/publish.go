package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/broker"
)

// publisher implements herald.v1.PublisherService.
type publisher struct {
	heraldv1.UnimplementedPublisherServiceServer

	broker        broker.Broker
	types         TypeResolver
	typeURLs      typeURLResolver // types, for the type URLs allowed
	metrics       *metrics
	epoch         string
	maxEventBytes int
	draining      <-chan struct{}
	auth          auth.Authenticator // nil: everything allowed
	limiter       *publishLimiter
	presence      *presence
	tracer        *tracer // nil: tracing off
	log           *slog.Logger
}

// access is an authenticated caller.
type access struct {
	creds auth.Credentials
	perms auth.Permissions
}

var openAccess = access{perms: auth.Permissions{Publish: auth.Everything}}

// authenticate reads the caller's credentials from ctx.
func (p *publisher) authenticate(ctx context.Context) (access, error) {
	return p.authenticateCreds(ctx, grpcCredentials(ctx))
}

func (p *publisher) authenticateCreds(ctx context.Context, creds auth.Credentials) (access, error) {
	if p.auth == nil {
		return openAccess, nil
	}
	perms, err := p.auth.Authenticate(ctx, creds)
	return access{creds: creds, perms: perms}, err
}

// authorize checks one event against the caller's access and limits.
func (p *publisher) authorize(a access, topic string) error {
	if !a.perms.Expires.IsZero() && time.Now().After(a.perms.Expires) {
		return fmt.Errorf("%w: the token has expired", auth.ErrUnauthenticated)
	}
	if a.perms.Subject != "" && p.presence != nil {
		// A PublishStream authenticated before its subject was revoked
		// ends at its next event.
		if until, ok := p.presence.revokedUntil(a.perms.Subject); ok {
			return fmt.Errorf("%w: the token's subject is revoked until %s", auth.ErrUnauthenticated, until.UTC().Format(time.RFC3339))
		}
	}
	if err := authorizePublish(a.creds, a.perms, topic); err != nil {
		return err
	}
	return p.limiter.allow(a.perms.RateKey)
}

// Publish implements herald.v1.PublisherService.
func (p *publisher) Publish(ctx context.Context, req *heraldv1.PublishRequest) (*heraldv1.PublishResponse, error) {
	transport := transportGRPC
	if isGateway(ctx) {
		transport = transportREST
	}
	var err error
	ra, ok := accessFrom(ctx)
	a := ra.access
	if !ok || ra.topic != req.GetTopic() {
		// Not authorized for this topic by the REST front door (rest.go).
		a, err = p.authenticate(ctx)
		if err == nil {
			err = p.authorize(a, req.GetTopic())
		}
	}
	var resp *heraldv1.PublishResponse
	if err == nil {
		resp, err = p.publish(ctx, a, req, transport)
	} else {
		p.metrics.countPublish(transport, Code(err).String())
	}
	if err != nil {
		var limit *LimitError
		if errors.As(err, &limit) {
			_ = grpc.SetHeader(ctx, metadata.Pairs("retry-after", fmt.Sprint(int(math.Ceil(limit.RetryAfter.Seconds())))))
		}
		return nil, grpcError(err)
	}
	return resp, nil
}

func (p *publisher) publish(ctx context.Context, a access, req *heraldv1.PublishRequest, transport transport) (*heraldv1.PublishResponse, error) {
	c, err := p.begin(ctx, a, req, transport)
	if err != nil {
		return nil, err
	}
	res, err := p.append(c.ctx, c.span, c.ev)
	return c.finish(res, err)
}

// publishCall is one publish between its validation and its answer.
type publishCall struct {
	p         *publisher
	ctx       context.Context
	req       *heraldv1.PublishRequest
	transport transport
	start     time.Time
	span      trace.Span // nil: tracing off
	ev        *broker.Event
}

// begin validates req and makes its event; a refusal is counted and
// returned.
func (p *publisher) begin(ctx context.Context, a access, req *heraldv1.PublishRequest, transport transport) (publishCall, error) {
	c := publishCall{p: p, ctx: ctx, req: req, transport: transport, start: time.Now()}
	var step trace.Span
	if p.tracer != nil {
		c.ctx, c.span = p.tracer.startPublish(ctx, "herald.publish", req.GetTopic(), transport)
		step = p.tracer.step(c.ctx, "herald.validate")
	}
	ev, err := p.newEvent(req, a.perms.RateKey)
	if c.span != nil {
		endStep(step, err)
		if err == nil {
			stamp(c.ctx, ev)
		}
	}
	if err != nil {
		return publishCall{}, c.finishErr(err)
	}
	c.ev = ev
	return c, nil
}

// finish turns the broker's outcome into the answer, counting it.
func (c *publishCall) finish(res broker.PublishResult, err error) (*heraldv1.PublishResponse, error) {
	p := c.p
	if err == nil && res.Duplicate && res.Fingerprint != "" && res.Fingerprint != c.ev.Fingerprint {
		err = &KeyReusedError{Key: c.req.GetIdempotencyKey(), ID: broker.EventID{Epoch: p.epoch, Seq: res.Seq}.String()}
	}
	if err != nil {
		return nil, c.finishErr(err)
	}
	result := "ok"
	if res.Duplicate {
		result = "duplicate"
	}
	p.metrics.countPublish(c.transport, result)
	p.metrics.publishTime.Observe(time.Since(c.start).Seconds())
	if !res.Duplicate {
		p.presence.published(c.ev.Topic, res.Seq, c.ev.Time)
	}
	id := broker.EventID{Epoch: p.epoch, Seq: res.Seq}.String()
	if c.span != nil {
		endPublish(c.span, id, res.Duplicate, nil)
	}
	return &heraldv1.PublishResponse{Id: id, Duplicate: res.Duplicate}, nil
}

func (c *publishCall) finishErr(err error) error {
	c.p.metrics.countPublish(c.transport, Code(err).String())
	if c.span != nil {
		endPublish(c.span, "", false, err)
	}
	return err
}

// append hands ev to the broker and waits for its answer, in a span of
// its own when the publish has one. A pipelining broker's Publish joins
// its appends in flight, so concurrent publishers still share them.
func (p *publisher) append(ctx context.Context, span trace.Span, ev *broker.Event) (broker.PublishResult, error) {
	step := p.appendStep(ctx, span)
	res, err := p.broker.Publish(ctx, ev)
	p.appended(ctx, step, ev, err)
	return res, err
}

// appendAsync is append without waiting, for a broker that pipelines:
// done gets the outcome, from any goroutine, and appends handed over one
// after the other keep their order per topic.
func (p *publisher) appendAsync(ctx context.Context, span trace.Span, pl broker.Pipeliner, ev *broker.Event, done func(broker.PublishResult, error)) {
	step := p.appendStep(ctx, span)
	pl.PublishAsync(ctx, ev, func(res broker.PublishResult, err error) {
		p.appended(ctx, step, ev, err)
		done(res, err)
	})
}

// appendStep starts the append's span, when the publish has one.
func (p *publisher) appendStep(ctx context.Context, span trace.Span) trace.Span {
	if span == nil {
		return nil
	}
	return p.tracer.step(ctx, "herald.append")
}

// appended ends the append's span, and logs an internal error's cause, as
// the caller is told only that there was one.
func (p *publisher) appended(ctx context.Context, step trace.Span, ev *broker.Event, err error) {
	if step != nil {
		endStep(step, err)
	}
	if err != nil && Code(err) == codes.Internal {
		p.log.ErrorContext(ctx, "publish failed", "topic", ev.Topic, "err", err)
	}
}

// DeletedEventType is the SSE event of a topic whose state was deleted
// (DeleteTopicState). Its data is a JSON object: {"topic": "<topic>"}.
const DeletedEventType = broker.DeletedType

// isDeletion reports whether ev marks its topic's state as deleted: the
// server's own event, which no publisher can forge (the herald. prefix is
// reserved) and which has no payload.
func isDeletion(ev *broker.Event) bool {
	return ev.TypeURL == "" && ev.Type == DeletedEventType
}

// DeleteTopicState implements herald.v1.PublisherService: a deletion is an
// event of the topic, published with the same grants, limits and
// idempotency as any other.
func (p *publisher) DeleteTopicState(ctx context.Context, req *heraldv1.DeleteTopicStateRequest) (*heraldv1.DeleteTopicStateResponse, error) {
	transport := transportGRPC
	if isGateway(ctx) {
		transport = transportREST
	}
	var err error
	ra, ok := accessFrom(ctx)
	a := ra.access
	if !ok || ra.topic != req.GetTopic() {
		a, err = p.authenticate(ctx)
		if err == nil {
			err = p.authorize(a, req.GetTopic())
		}
	}
	if err == nil {
		err = broker.ValidateTopic(req.GetTopic())
	}
	if err == nil && len(req.GetIdempotencyKey()) > maxIdempotencyKeyLen {
		err = fmt.Errorf("%w: idempotency_key is %d bytes, longer than %d", broker.ErrInvalidEvent, len(req.GetIdempotencyKey()), maxIdempotencyKeyLen)
	}
	var res broker.PublishResult
	var span trace.Span // nil: tracing off
	if err == nil {
		ev := &broker.Event{Topic: req.GetTopic(), Type: DeletedEventType}
		if k := req.GetIdempotencyKey(); k != "" {
			ev.IdempotencyKey = scopedKey(a.perms.RateKey, k)
			ev.Fingerprint = fingerprint(ev)
		}
		if p.tracer != nil {
			ctx, span = p.tracer.startPublish(ctx, "herald.delete_state", req.GetTopic(), transport)
			stamp(ctx, ev)
		}
		res, err = p.append(ctx, span, ev)
		if err == nil && res.Duplicate && res.Fingerprint != "" && res.Fingerprint != ev.Fingerprint {
			err = &KeyReusedError{Key: req.GetIdempotencyKey(), ID: broker.EventID{Epoch: p.epoch, Seq: res.Seq}.String()}
		}
	}
	result := "ok"
	switch {
	case err != nil:
		result = Code(err).String()
	case res.Duplicate:
		result = "duplicate"
	}
	p.metrics.countPublish(transport, result)
	if err != nil {
		if span != nil {
			endPublish(span, "", false, err)
		}
		return nil, grpcError(err)
	}
	id := broker.EventID{Epoch: p.epoch, Seq: res.Seq}.String()
	if span != nil {
		endPublish(span, id, res.Duplicate, nil)
	}
	return &heraldv1.DeleteTopicStateResponse{Id: id, Duplicate: res.Duplicate}, nil
}
