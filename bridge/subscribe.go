package bridge

import (
	"errors"
	"fmt"
	"math"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/broker"
)

// subscriberService implements herald.v1.SubscriberService: the SSE
// stream's rules (topics, patterns, resume, gaps, slow consumers) for
// backends, with payloads as Any instead of JSON.
type subscriberService struct {
	heraldv1.UnimplementedSubscriberServiceServer

	hub       *Hub
	auth      auth.Authenticator // nil: everything allowed
	maxTopics int
	conns     *connLimiter // shared with the SSE handler
	// maxSnapshotTopics bounds a snapshot (Config.MaxSnapshotTopics).
	maxSnapshotTopics int
}

// Subscribe implements herald.v1.SubscriberService. It mirrors the SSE
// handler: subscribe to the hub first, then read the history, so that no
// event falls between the two; queued events already replayed are skipped.
//
// Send blocks on HTTP/2 flow control. A consumer that stops reading parks
// this handler in Send while the hub, finding its queue full, drops it
// without waiting for it; the stream then ends with RESOURCE_EXHAUSTED as
// soon as the consumer reads again, or with the connection.
func (s *subscriberService) Subscribe(req *heraldv1.SubscribeRequest, stream grpc.ServerStreamingServer[heraldv1.SubscribeResponse]) error {
	patterns, err := parseTopics(req.GetTopics(), s.maxTopics, "topics or patterns")
	if err != nil {
		return grpcError(err)
	}
	var perms auth.Permissions
	if s.auth != nil {
		creds := grpcCredentials(stream.Context())
		if perms, err = s.auth.Authenticate(stream.Context(), creds); err == nil {
			err = authorizeSubscribe(creds, perms, patterns)
		}
		if err != nil {
			return grpcError(err)
		}
	}
	var f *filter
	if req.GetFilter() != "" {
		if f, err = s.hub.filters.compile(req.GetFilter()); err != nil {
			return grpcError(err)
		}
	}
	remote, ip := s.conns.grpcClientIP(stream.Context())
	release, err := s.conns.acquireConn(remote, ip)
	if err != nil {
		var limit *LimitError
		if errors.As(err, &limit) {
			stream.SetTrailer(metadata.Pairs("retry-after", fmt.Sprint(int(math.Ceil(limit.RetryAfter.Seconds())))))
		}
		return grpcError(err)
	}
	defer release()
	sub, err := s.hub.subscribe(perms.Subject, patterns, nil, f)
	if errors.Is(err, broker.ErrClosed) {
		return status.Error(codes.Unavailable, "server is shutting down; subscribe again, with last_event_id, to resume")
	}
	if err != nil {
		return status.Errorf(codes.Unavailable, "cannot subscribe this node to the broker (%v); subscribe again later, with last_event_id, to resume", err)
	}
	defer s.hub.unsubscribe(sub)
	// The response headers tell the client it is subscribed: every event
	// accepted from now on reaches it.
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}

	ctx := stream.Context()
	begun, err := s.hub.begin(ctx, patterns, req.GetLastEventId(), req.GetLastEventId() != "", req.GetSnapshot(), sub, s.maxSnapshotTopics)
	if err != nil {
		return grpcError(err)
	}
	if begun.gap != "" {
		gap := &heraldv1.Gap{LastEventId: req.GetLastEventId(), Reason: begun.gap}
		if err := stream.Send(&heraldv1.SubscribeResponse{Message: &heraldv1.SubscribeResponse_Gap{Gap: gap}}); err != nil {
			return err
		}
	}
	for _, ev := range begun.events {
		if err := stream.Send(s.response(ev)); err != nil {
			return err
		}
	}
	s.hub.metrics.delivered.Add(float64(len(begun.events)))
	if begun.synced {
		synced := &heraldv1.Synced{Topics: int32(begun.topics), LastEventId: broker.EventID{Epoch: s.hub.epoch, Seq: begun.upto}.String()}
		if err := stream.Send(&heraldv1.SubscribeResponse{Message: &heraldv1.SubscribeResponse_Synced{Synced: synced}}); err != nil {
			return err
		}
	}
	lastSeq := begun.lastSeq

	expired, stop := expiryTimer(perms)
	defer stop()
	for {
		select {
		case <-expired:
			return status.Error(codes.Unauthenticated, "the token has expired; subscribe again with a fresh token and last_event_id to resume")
		case <-sub.queue.ready:
			for {
				it, ok := sub.queue.pop()
				if !ok {
					break
				}
				if it.kind != itemEvent || it.ev.Seq <= lastSeq {
					continue // gRPC keeps idle connections alive by itself
				}
				if err := stream.Send(s.response(it.ev)); err != nil {
					return err
				}
				s.hub.metrics.delivered.Inc()
				if sub.reason.Load() != dropNone {
					break // dropped: end below, without sending the rest
				}
			}
		case <-sub.done:
			if sub.reason.Load() == dropRevoked {
				return status.Error(codes.Unauthenticated, "the token's subject was revoked (herald revoke); its tokens are refused until the revocation ends")
			}
			if sub.reason.Load() == dropShutdown {
				return status.Error(codes.Unavailable, "server is shutting down; subscribe again, with last_event_id set to the id of the last event received, to resume")
			}
			return status.Errorf(codes.ResourceExhausted,
				"subscriber too slow: more than %d events waited for it; subscribe again with last_event_id set to the id of the last event received to resume without loss",
				s.hub.queueSize)
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// response builds the message for ev. Payload and attributes are shared
// with ev, which is read-only once published.
func (s *subscriberService) response(ev *broker.Event) *heraldv1.SubscribeResponse {
	if isDeletion(ev) {
		return &heraldv1.SubscribeResponse{Message: &heraldv1.SubscribeResponse_Deleted{Deleted: &heraldv1.TopicDeleted{
			Id:    broker.EventID{Epoch: s.hub.epoch, Seq: ev.Seq}.String(),
			Topic: ev.Topic,
		}}}
	}
	return &heraldv1.SubscribeResponse{Message: &heraldv1.SubscribeResponse_Event{Event: &heraldv1.Event{
		Id:         broker.EventID{Epoch: s.hub.epoch, Seq: ev.Seq}.String(),
		Topic:      ev.Topic,
		Type:       ev.Type,
		Payload:    &anypb.Any{TypeUrl: ev.TypeURL, Value: ev.Payload},
		Attributes: ev.Attributes,
		Time:       timestamppb.New(ev.Time),
	}}}
}

// parseTopics validates a subscription's topics and patterns, the same for
// SSE and gRPC; repeats count once. what names them in the message for
// none.
func parseTopics(topics []string, maxTopics int, what string) ([]broker.Pattern, error) {
	if len(topics) == 0 {
		return nil, fmt.Errorf("%w: no topic: give one or more %s", broker.ErrBadRequest, what)
	}
	if len(topics) > maxTopics {
		return nil, fmt.Errorf("%w: %d topics, more than the limit of %d per subscription", broker.ErrBadRequest, len(topics), maxTopics)
	}
	patterns := make([]broker.Pattern, 0, len(topics))
	seen := make(map[string]bool, len(topics))
	for _, t := range topics {
		if seen[t] {
			continue
		}
		seen[t] = true
		p, err := broker.ParsePattern(t)
		if err != nil {
			return nil, err
		}
		patterns = append(patterns, p)
	}
	return patterns, nil
}
