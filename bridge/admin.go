package bridge

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/broker"
)

// adminService serves herald.v1.AdminService: the cluster's topics,
// presence, history, nodes and revocations, to callers whose token has the
// admin grant (auth.Permissions.Admin). Errors get their codes here, as
// the publish path's do.
type adminService struct {
	heraldv1.UnimplementedAdminServiceServer
	auth     auth.Authenticator // nil: everything allowed
	hub      *Hub
	presence *presence
	broker   broker.Broker
}

// Limits of the admin API's pages.
const (
	defaultTopicsLimit = 100
	defaultEventsLimit = 50
	maxAdminLimit      = 1000
)

// needAdmin is what a refusal of the admin API says.
const needAdmin = `the admin API takes a token whose "herald" claim has "admin": true (herald token --admin)`

// authorizeAdmin authenticates a caller of the admin API and checks its
// admin grant.
func (a *adminService) authorizeAdmin(ctx context.Context, creds auth.Credentials) error {
	if a.auth == nil {
		return nil
	}
	perms, err := a.auth.Authenticate(ctx, creds)
	if err != nil {
		return err
	}
	if perms.Admin {
		return nil
	}
	if creds.Empty() {
		return fmt.Errorf("%w: %s", auth.ErrUnauthenticated, needAdmin)
	}
	return fmt.Errorf("%w: %s; these credentials are not admin", auth.ErrPermissionDenied, needAdmin)
}

// begin authorizes a call: the REST front door (rest.go) already did for a
// REST call; a gRPC call is authorized here.
func (a *adminService) begin(ctx context.Context) error {
	if _, viaREST := accessFrom(ctx); viaREST {
		return nil
	}
	return a.authorizeAdmin(ctx, grpcCredentials(ctx))
}

// limitOf checks a page's limit, giving 0 the default.
func limitOf(n int32, def int) (int, error) {
	switch {
	case n == 0:
		return def, nil
	case n < 1 || n > maxAdminLimit:
		return 0, fmt.Errorf("%w: limit must be 1 to %d, got %d", broker.ErrBadRequest, maxAdminLimit, n)
	}
	return int(n), nil
}

// ListTopics implements herald.v1.AdminService.
func (a *adminService) ListTopics(ctx context.Context, req *heraldv1.ListTopicsRequest) (*heraldv1.ListTopicsResponse, error) {
	if err := a.begin(ctx); err != nil {
		return nil, grpcError(err)
	}
	limit, err := limitOf(req.GetLimit(), defaultTopicsLimit)
	if err != nil {
		return nil, grpcError(err)
	}
	var filter *broker.Pattern
	if req.GetPattern() != "" {
		p, err := broker.ParsePattern(req.GetPattern())
		if err != nil {
			return nil, grpcError(fmt.Errorf("%w: pattern: %v", broker.ErrBadRequest, err))
		}
		filter = &p
	}
	reports, err := a.presence.reports(ctx)
	if err != nil {
		return nil, grpcError(err)
	}
	topics := make(map[string]*heraldv1.TopicInfo)
	info := func(name string) *heraldv1.TopicInfo {
		t := topics[name]
		if t == nil {
			p, err := broker.ParsePattern(name)
			if err != nil { // not from this version of Herald
				return nil
			}
			if filter != nil && !(p.Literal() && filter.Match(name) || !p.Literal() && filter.Covers(p)) {
				return nil
			}
			t = &heraldv1.TopicInfo{Topic: name, Pattern: !p.Literal(), SubscribersByNode: map[string]int32{}}
			topics[name] = t
		}
		return t
	}
	lastSeq := make(map[string]uint64)
	for node, r := range reports {
		for name, n := range r.Subscribers {
			if t := info(name); t != nil {
				t.Subscribers += n
				t.SubscribersByNode[node] += n
			}
		}
		for name, pub := range r.Published {
			t := info(name)
			if t == nil {
				continue
			}
			t.PublishedLastMinute += pub.LastMinute
			if pub.LastSeq > lastSeq[name] {
				lastSeq[name] = pub.LastSeq
				t.LastEventId = broker.EventID{Epoch: a.hub.epoch, Seq: pub.LastSeq}.String()
				t.LastEventTime = timestamppb.New(time.UnixMilli(pub.LastTime))
			}
		}
	}
	list := make([]*heraldv1.TopicInfo, 0, len(topics))
	for _, t := range topics {
		if t.Subscribers == 0 && t.PublishedLastMinute == 0 {
			continue
		}
		t.PublishRate = float64(t.PublishedLastMinute) / rateWindow.Seconds()
		list = append(list, t)
	}
	slices.SortFunc(list, func(x, y *heraldv1.TopicInfo) int {
		return cmp.Or(cmp.Compare(y.Subscribers, x.Subscribers), cmp.Compare(y.PublishedLastMinute, x.PublishedLastMinute), strings.Compare(x.Topic, y.Topic))
	})
	resp := &heraldv1.ListTopicsResponse{Nodes: int32(len(reports))}
	if len(list) > limit {
		list, resp.More = list[:limit], true
	}
	resp.Topics = list
	if err := a.addRetained(ctx, list, lastSeq); err != nil {
		return nil, grpcError(err)
	}
	return resp, nil
}

// addRetained fills in the retained counts and last events of the listed
// topics from the broker's history: one Replay of them all, bounded by
// retention.
func (a *adminService) addRetained(ctx context.Context, list []*heraldv1.TopicInfo, lastSeq map[string]uint64) error {
	var patterns []broker.Pattern
	byTopic := make(map[string]*heraldv1.TopicInfo)
	for _, t := range list {
		if !t.Pattern {
			p, _ := broker.ParsePattern(t.Topic)
			patterns = append(patterns, p)
			byTopic[t.Topic] = t
		}
	}
	if len(patterns) == 0 {
		return nil
	}
	res, err := a.broker.Replay(ctx, patterns, broker.EventID{})
	if err != nil {
		return err
	}
	for _, ev := range res.Events {
		t := byTopic[ev.Topic]
		if t == nil {
			continue
		}
		t.Retained++
		if ev.Seq > lastSeq[ev.Topic] {
			lastSeq[ev.Topic] = ev.Seq
			t.LastEventId = broker.EventID{Epoch: a.hub.epoch, Seq: ev.Seq}.String()
			t.LastEventTime = timestamppb.New(ev.Time)
		}
	}
	return nil
}

// ListTopicEvents implements herald.v1.AdminService.
func (a *adminService) ListTopicEvents(ctx context.Context, req *heraldv1.ListTopicEventsRequest) (*heraldv1.ListTopicEventsResponse, error) {
	if err := a.begin(ctx); err != nil {
		return nil, grpcError(err)
	}
	resp, err := a.listTopicEvents(ctx, req)
	if err != nil {
		return nil, grpcError(err)
	}
	return resp, nil
}

func (a *adminService) listTopicEvents(ctx context.Context, req *heraldv1.ListTopicEventsRequest) (*heraldv1.ListTopicEventsResponse, error) {
	if err := broker.ValidateTopic(req.GetTopic()); err != nil {
		return nil, err
	}
	limit, err := limitOf(req.GetLimit(), defaultEventsLimit)
	if err != nil {
		return nil, err
	}
	if req.GetAfter() != "" && req.GetBefore() != "" {
		return nil, fmt.Errorf("%w: after and before cannot be used together", broker.ErrBadRequest)
	}
	position := func(name, id string) (uint64, error) {
		if id == "" {
			return 0, nil
		}
		eid, ok := broker.ParseEventID(id)
		if !ok {
			return 0, fmt.Errorf("%w: %s: %q is not an event id", broker.ErrBadRequest, name, broker.Printable(id))
		}
		if eid.Epoch != a.hub.epoch {
			return 0, fmt.Errorf("%w: %s: %q belongs to an earlier history that is no longer available", broker.ErrBadRequest, name, broker.Printable(id))
		}
		return eid.Seq, nil
	}
	after, err := position("after", req.GetAfter())
	if err != nil {
		return nil, err
	}
	before, err := position("before", req.GetBefore())
	if err != nil {
		return nil, err
	}
	p, _ := broker.ParsePattern(req.GetTopic())
	// The whole retained history of the topic, which retention bounds:
	// the retained count comes with it.
	res, err := a.broker.Replay(ctx, []broker.Pattern{p}, broker.EventID{})
	if err != nil {
		return nil, err
	}
	evs := res.Events
	resp := &heraldv1.ListTopicEventsResponse{Retained: int32(len(evs))}
	if before > 0 {
		end, _ := slices.BinarySearchFunc(evs, before, func(ev *broker.Event, seq uint64) int { return cmp.Compare(ev.Seq, seq) })
		start := max(0, end-limit)
		evs, resp.More = evs[start:end], start > 0
	} else {
		start, found := slices.BinarySearchFunc(evs, after, func(ev *broker.Event, seq uint64) int { return cmp.Compare(ev.Seq, seq) })
		if found {
			start++
		}
		evs = evs[start:]
		if len(evs) > limit {
			evs, resp.More = evs[:limit], true
		}
	}
	for _, ev := range evs {
		payload := new(structpb.Value)
		if err := protojson.Unmarshal(a.hub.eventJSON(ev), payload); err != nil {
			payload = structpb.NewNullValue()
		}
		resp.Events = append(resp.Events, &heraldv1.TopicEvent{
			Id:         broker.EventID{Epoch: a.hub.epoch, Seq: ev.Seq}.String(),
			Type:       ev.Type,
			Time:       timestamppb.New(ev.Time),
			Payload:    payload,
			Attributes: ev.Attributes,
		})
	}
	return resp, nil
}

// ListNodes implements herald.v1.AdminService.
func (a *adminService) ListNodes(ctx context.Context, _ *heraldv1.ListNodesRequest) (*heraldv1.ListNodesResponse, error) {
	if err := a.begin(ctx); err != nil {
		return nil, grpcError(err)
	}
	reports, err := a.presence.reports(ctx)
	if err != nil {
		// The broker cannot be read: this node's own figures, which say
		// so, are what an operator needs most now.
		reports = map[string]nodeReport{a.presence.name: a.presence.report(ctx)}
	}
	resp := &heraldv1.ListNodesResponse{}
	for name, r := range reports {
		resp.Nodes = append(resp.Nodes, &heraldv1.NodeInfo{
			Name:          name,
			Self:          name == a.presence.name,
			Version:       r.Version,
			Started:       timestamppb.New(r.Started),
			UptimeSeconds: int32(r.Reported.Sub(r.Started).Seconds()),
			Connections:   int32(r.Connections),
			BrokerHealthy: r.Healthy,
			BrokerError:   r.BrokerError,
			Reported:      timestamppb.New(r.Reported),
		})
	}
	slices.SortFunc(resp.Nodes, func(x, y *heraldv1.NodeInfo) int { return strings.Compare(x.Name, y.Name) })
	return resp, nil
}

// errNoRevocations refuses revocations on a broker that cannot keep them.
var errNoRevocations = fmt.Errorf("%w: this server's broker does not keep revocations", broker.ErrConflict)

// CreateRevocation implements herald.v1.AdminService.
func (a *adminService) CreateRevocation(ctx context.Context, req *heraldv1.CreateRevocationRequest) (*heraldv1.CreateRevocationResponse, error) {
	if err := a.begin(ctx); err != nil {
		return nil, grpcError(err)
	}
	rv, ok := a.broker.(broker.Revoker)
	if !ok {
		return nil, grpcError(errNoRevocations)
	}
	if req.GetUntil() == nil {
		return nil, grpcError(fmt.Errorf("%w: until is required: the time the revocation ends, e.g. \"2030-01-01T00:00:00Z\"", broker.ErrBadRequest))
	}
	if err := req.GetUntil().CheckValid(); err != nil {
		return nil, grpcError(fmt.Errorf("%w: until: %v", broker.ErrBadRequest, err))
	}
	r := broker.Revocation{Subject: req.GetSubject(), Until: req.GetUntil().AsTime()}
	if err := broker.ValidSubject(r.Subject); err != nil {
		return nil, grpcError(fmt.Errorf("subject: %w", err))
	}
	if err := rv.Revoke(ctx, r.Subject, r.Until); err != nil {
		return nil, grpcError(err)
	}
	a.presence.addRevoked(r)
	return &heraldv1.CreateRevocationResponse{Revocation: &heraldv1.Revocation{Subject: r.Subject, Until: timestamppb.New(r.Until)}}, nil
}

// ListRevocations implements herald.v1.AdminService.
func (a *adminService) ListRevocations(ctx context.Context, _ *heraldv1.ListRevocationsRequest) (*heraldv1.ListRevocationsResponse, error) {
	if err := a.begin(ctx); err != nil {
		return nil, grpcError(err)
	}
	rv, ok := a.broker.(broker.Revoker)
	if !ok {
		return &heraldv1.ListRevocationsResponse{}, nil
	}
	revs, err := rv.Revocations(ctx)
	if err != nil {
		return nil, grpcError(err)
	}
	slices.SortFunc(revs, func(x, y broker.Revocation) int { return strings.Compare(x.Subject, y.Subject) })
	resp := &heraldv1.ListRevocationsResponse{}
	for _, r := range revs {
		resp.Revocations = append(resp.Revocations, &heraldv1.Revocation{Subject: r.Subject, Until: timestamppb.New(r.Until)})
	}
	return resp, nil
}

// eventJSON returns ev's payload in the default JSON form, as SSE data
// carries it.
func (h *Hub) eventJSON(ev *broker.Event) []byte {
	r := renderedOf(ev)
	r.mu.Lock()
	defer r.mu.Unlock()
	return h.defaultJSON(ev, r, nil)
}
