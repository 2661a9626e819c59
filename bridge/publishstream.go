package bridge

import (
	"context"
	"errors"
	"io"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/broker"
)

// publishWindow is how many events of one PublishStream may be unanswered
// at once: appended to the broker, or waiting for its acknowledgement. A
// broker that pipelines (broker.Pipeliner) then has them all in flight;
// with another, the stream answers one event at a time.
const publishWindow = 256

// pendingAnswer is the answer to one request of a PublishStream, ready
// once done is closed.
type pendingAnswer struct {
	done chan struct{}
	resp *heraldv1.PublishResponse
}

// PublishStream implements herald.v1.PublisherService: one response per
// request, in request order, each sent only once the broker accepted its
// event (or refused it). Up to publishWindow events are in flight at once,
// so a publisher that sends without waiting for answers gets the broker's
// pipelined throughput; events of one topic are accepted in request
// order. A rejected event is answered with an error response and the
// stream goes on. When the server drains, the stream stops reading, answers
// every request it read, and ends with UNAVAILABLE; an expired token ends it
// the same way, with UNAUTHENTICATED.
func (p *publisher) PublishStream(stream grpc.BidiStreamingServer[heraldv1.PublishRequest, heraldv1.PublishResponse]) error {
	ctx := stream.Context()
	a, err := p.authenticate(ctx)
	if err != nil {
		return grpcError(err)
	}
	answers := make(chan *pendingAnswer, publishWindow)
	sendErr := make(chan error, 1)
	w := &answerWindow{stream: stream, answers: answers}
	go func() {
		// The sender: answers in request order, each once it is ready.
		var failed error
		for pa := range answers {
			<-pa.done
			if failed == nil {
				failed = stream.Send(pa.resp)
			}
			w.unsent.Add(-1)
		}
		sendErr <- failed
	}()
	end := p.readPublishes(stream, a, w)
	close(answers)
	if err := <-sendErr; err != nil {
		return err
	}
	return end
}

// An answerWindow orders a PublishStream's answers. An answer ready when
// its request is read, with none before it unsent (a refused event, or any
// event on a broker that does not pipeline), is sent by the reading
// goroutine itself: handing it to the sender would wake a goroutine per
// event. Any other goes to the sender, behind those before it.
type answerWindow struct {
	stream  grpc.BidiStreamingServer[heraldv1.PublishRequest, heraldv1.PublishResponse]
	answers chan<- *pendingAnswer // to the sender; its capacity is the window
	// unsent counts the answers handed to the sender and not yet sent:
	// while it is 0 the sender is not sending, and the reader may.
	unsent atomic.Int32
}

// ready answers with resp, now or after the answers before it.
func (w *answerWindow) ready(ctx context.Context, resp *heraldv1.PublishResponse) error {
	if w.unsent.Load() == 0 {
		return w.stream.Send(resp)
	}
	pa := &pendingAnswer{done: make(chan struct{}), resp: resp}
	close(pa.done)
	return w.queue(ctx, pa)
}

// queue hands pa to the sender, waiting while the window is full.
func (w *answerWindow) queue(ctx context.Context, pa *pendingAnswer) error {
	w.unsent.Add(1)
	select {
	case w.answers <- pa:
		return nil
	case <-ctx.Done():
		w.unsent.Add(-1)
		return ctx.Err()
	}
}

// readPublishes reads requests and hands their events to the broker
// until the stream ends, answering each through w. It returns what the
// stream ends with.
func (p *publisher) readPublishes(stream grpc.BidiStreamingServer[heraldv1.PublishRequest, heraldv1.PublishResponse], a access, w *answerWindow) error {
	ctx := stream.Context()
	pl, pipelined := p.broker.(broker.Pipeliner)
	for {
		select {
		case <-p.draining:
			return status.Error(codes.Unavailable, "server is shutting down; reconnect to publish")
		default:
		}
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		err = p.authorize(a, req.GetTopic())
		if errors.Is(err, auth.ErrUnauthenticated) {
			return grpcError(err) // expired: reconnect with a fresh token
		}
		var c publishCall
		if err != nil {
			p.metrics.countPublish(transportStream, Code(err).String())
		} else {
			c, err = p.begin(ctx, a, req, transportStream)
		}
		if err != nil {
			if err := w.ready(ctx, errorResponse(err)); err != nil {
				return err
			}
			continue
		}
		if !pipelined {
			res, err := p.append(c.ctx, c.span, c.ev)
			resp, err := c.finish(res, err)
			if err != nil {
				resp = errorResponse(err)
			}
			if err := w.ready(ctx, resp); err != nil {
				return err
			}
			continue
		}
		pa := &pendingAnswer{done: make(chan struct{})}
		if err := w.queue(ctx, pa); err != nil {
			return err
		}
		call := c // the answer's own copy: c stays on the stack
		p.appendAsync(c.ctx, c.span, pl, c.ev, func(res broker.PublishResult, err error) {
			resp, err := call.finish(res, err)
			if err != nil {
				resp = errorResponse(err)
			}
			pa.resp = resp
			close(pa.done)
		})
	}
}

// errorResponse is the answer to a refused event of a PublishStream.
func errorResponse(err error) *heraldv1.PublishResponse {
	st := status.Convert(grpcError(err))
	e := &heraldv1.PublishError{Code: int32(st.Code()), Message: st.Message()}
	var limit *LimitError
	if errors.As(err, &limit) {
		e.RetryDelay = durationpb.New(limit.RetryAfter)
	}
	return &heraldv1.PublishResponse{Error: e}
}
