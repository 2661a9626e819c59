package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

// Topics: live ones (soak.t0 …) that churning subscribers pick from, and
// state ones (soak.state.s0 …) that snapshot subscribers take whole and
// whose state publishers delete now and then.
const (
	liveTopics  = 16
	stateTopics = 16
)

func liveTopic(i int) string  { return "soak.t" + strconv.Itoa(i) }
func stateTopic(i int) string { return "soak.state.s" + strconv.Itoa(i) }

// randomTopic is a live or a state topic, evenly.
func randomTopic() string {
	i := rand.IntN(liveTopics + stateTopics)
	if i < liveTopics {
		return liveTopic(i)
	}
	return stateTopic(i - liveTopics)
}

// publishers publish over every API; seq numbers the events (Tick.n) and
// their idempotency keys.
type publishers struct {
	srv  *server
	st   *stats
	conn *grpc.ClientConn
	http *http.Client
	seq  atomic.Int32
}

func (p *publishers) next() (n int32, region, key string) {
	n = p.seq.Add(1)
	return n, regions[int(n)%len(regions)], "soak-" + strconv.Itoa(int(n))
}

// note pads events to a modest size, varying so that frames differ in length.
func note(n int32) string {
	const pad = "the quick brown fox jumps over the lazy dog; "
	s := pad + pad + pad
	return s[:64+int(n)%64]
}

// every calls f at rate per second until ctx ends.
func every(ctx context.Context, rate float64, f func(context.Context)) {
	if rate <= 0 {
		return
	}
	t := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f(ctx)
		}
	}
}

// unary publishes with Publish, one call at a time.
func (p *publishers) unary(ctx context.Context, rate float64) {
	pub := heraldv1.NewPublisherServiceClient(p.conn)
	token := p.srv.token("soak-unary", publishGrants, 48*time.Hour)
	every(ctx, rate, func(ctx context.Context) {
		n, region, key := p.next()
		cctx, cancel := context.WithTimeout(withToken(ctx, token), 30*time.Second)
		defer cancel()
		r, err := pub.Publish(cctx, &heraldv1.PublishRequest{Topic: randomTopic(), Payload: tickPayload(n, region, note(n)), IdempotencyKey: key})
		switch {
		case err == nil && r.GetId() != "":
			p.st.inc(cPublishGRPC)
		case err == nil:
			p.st.fail("Publish", errors.New("answer without an id"))
		case ctx.Err() == nil:
			p.st.fail("Publish", err)
		}
	})
}

// bulkTopics are where 16 KiB events go, at rate per second: only the
// slow readers' soak.> covers them, so that a stalled reader's socket
// buffers fill within its stall and Herald cuts it, while the other
// subscribers are spared the bytes.
const bulkTopics = 2

// bulk publishes large events with Publish.
func (p *publishers) bulk(ctx context.Context, rate float64) {
	pub := heraldv1.NewPublisherServiceClient(p.conn)
	token := p.srv.token("soak-bulk", publishGrants, 48*time.Hour)
	big := strings.Repeat("0123456789abcdef", 1024)
	every(ctx, rate, func(ctx context.Context) {
		n, region, key := p.next()
		cctx, cancel := context.WithTimeout(withToken(ctx, token), 30*time.Second)
		defer cancel()
		topic := "soak.bulk.b" + strconv.Itoa(rand.IntN(bulkTopics))
		r, err := pub.Publish(cctx, &heraldv1.PublishRequest{Topic: topic, Payload: tickPayload(n, region, big), IdempotencyKey: key})
		switch {
		case err == nil && r.GetId() != "":
			p.st.inc(cPublishGRPC)
		case err == nil:
			p.st.fail("Publish", errors.New("answer without an id"))
		case ctx.Err() == nil:
			p.st.fail("Publish (bulk)", err)
		}
	})
}

// stream publishes over PublishStream with tokens that live 8-20 s: each
// stream ends with UNAUTHENTICATED at its first event after the token
// expired, and a new one is opened with a fresh token.
func (p *publishers) stream(ctx context.Context, rate float64) {
	pub := heraldv1.NewPublisherServiceClient(p.conn)
	for ctx.Err() == nil {
		ttl := 8*time.Second + rand.N(12*time.Second)
		token := p.srv.token("soak-stream", publishGrants, ttl)
		p.oneStream(ctx, pub, token, rate)
	}
}

func (p *publishers) oneStream(ctx context.Context, pub heraldv1.PublisherServiceClient, token string, rate float64) {
	sctx, cancel := context.WithCancel(withToken(ctx, token))
	defer cancel()
	s, err := pub.PublishStream(sctx)
	if err != nil {
		if ctx.Err() == nil {
			p.st.fail("PublishStream", err)
		}
		return
	}
	done := make(chan error, 1)
	go func() {
		for {
			r, err := s.Recv()
			if err != nil {
				done <- err
				return
			}
			if r.GetId() != "" {
				p.st.inc(cPublishStream)
			} else {
				p.st.fail("PublishStream", errors.New("answer without an id"))
			}
		}
	}()
	t := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-done:
			if status.Code(err) == codes.Unauthenticated {
				p.st.inc(cStreamExpired)
			} else if ctx.Err() == nil {
				p.st.fail("PublishStream", err)
			}
			return
		case <-t.C:
			n, region, key := p.next()
			if err := s.Send(&heraldv1.PublishRequest{Topic: randomTopic(), Payload: tickPayload(n, region, note(n)), IdempotencyKey: key}); err != nil {
				// The stream has ended; Recv says why.
				t.Stop()
			}
		}
	}
}

// rest publishes with POST /v1/topics/{topic}/events and, every
// deleteEvery, deletes a state topic's state.
func (p *publishers) rest(ctx context.Context, rate float64, deleteEvery time.Duration) {
	token := p.srv.token("soak-rest", publishGrants, 48*time.Hour)
	go every(ctx, 1/deleteEvery.Seconds(), func(ctx context.Context) {
		topic := stateTopic(rand.IntN(stateTopics))
		if _, err := p.do(ctx, http.MethodDelete, "/v1/topics/"+topic+"/state", token, nil); err == nil {
			p.st.inc(cDeleteState)
		} else if ctx.Err() == nil {
			p.st.fail("DELETE state", err)
		}
	})
	every(ctx, rate, func(ctx context.Context) {
		n, region, key := p.next()
		// The payload in protojson's Any form, written by hand: the type
		// exists only as a pushed descriptor.
		body := fmt.Appendf(nil, `{"payload":{"@type":%q,"n":%d,"region":%q,"note":%q},"idempotencyKey":%q}`, tickURL, n, region, note(n), key)
		if _, err := p.do(ctx, http.MethodPost, "/v1/topics/"+randomTopic()+"/events", token, body); err == nil {
			p.st.inc(cPublishREST)
		} else if ctx.Err() == nil {
			p.st.fail("REST publish", err)
		}
	})
}

func (p *publishers) do(ctx context.Context, method, path, token string, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+p.srv.http+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}
