package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

// Scenario 7, hostile input: requests that once cost Herald far more than
// they cost the client, sent one kind at a time at a fixed rate to a
// secured server (HS256 tokens, only public.> open), measuring the
// server's CPU and memory per request against the cheapest refusal there
// is, a publish without a token. Every kind has an expected answer, the
// refusal the server is meant to give; any other is counted as unexpected.
// There is no floor: the reference is the baseline kind, on the same
// server build, in the same run.

// A hostileKind is one kind of hostile request.
type hostileKind struct {
	key, title string
	want       []string // the expected answers
	// held: the requests are meant to be held open until the server's
	// body read timeout; they get no warm-up, whose held requests would
	// overlap the window's.
	held bool
	// sender returns what sends one request to srv, and what releases
	// what it holds once the kind is done.
	sender func(p *hostilePrep, srv *server) (send func() outcome, done func(), err error)
}

// hostilePrep is what every kind of a run shares: the secured server's
// flags, a token and the payloads, built once.
type hostilePrep struct {
	args        []string      // for herald serve
	bodyTimeout time.Duration // the server's body read timeout; 0: its default, not set by the harness
	token       string        // may publish to hostile.>, subscribe to nothing private
	deepJSON    []byte        // REST publish body
	deepAny     *heraldv1.PublishRequest
	anyDepth    int
}

const (
	hostileTopic   = "hostile.t"
	hostileHuge    = 200_000_000 // a slow body's announced length, over any REST body limit
	hostileDrip    = `{"payl`    // what a slow body sends of itself
	hostileTTL     = 24 * time.Hour
	hostilePrivate = "hostile.private" // not under --public-topics
)

var hostileKeys = []string{"baseline", "deep-json-anon", "deep-json", "deep-grpc", "fields", "slow-over", "slow"}

func (b *bench) hostileKinds() ([]hostileKind, error) {
	c := b.cfg
	small := []byte(`{"payload":{"@type":"` + structURL + `","value":{}}}`)
	drip := []byte(hostileDrip)
	deep := func(p *hostilePrep) []byte { return p.deepJSON }
	all := []hostileKind{
		{key: "baseline", title: "REST publish, no token, tiny body", want: []string{"401"},
			sender: b.restPublish(false, func(*hostilePrep) []byte { return small }, -1)},
		{key: "deep-json-anon", title: fmt.Sprintf("REST publish, no token, %s of %d nested Any", kb(len(nestedAnyJSONBody(c.hostileJSONDepth))), c.hostileJSONDepth), want: []string{"401"},
			sender: b.restPublish(false, deep, -1)},
		{key: "deep-json", title: fmt.Sprintf("REST publish, token, %d nested Any", c.hostileJSONDepth), want: []string{"400"},
			sender: b.restPublish(true, deep, -1)},
		{key: "deep-grpc", title: "gRPC Publish, token, binary nested Any", want: []string{"INVALID_ARGUMENT"},
			sender: func(p *hostilePrep, srv *server) (func() outcome, func(), error) {
				conn, err := b.dialGRPC(srv.grpc)
				if err != nil {
					return nil, nil, err
				}
				client := heraldv1.NewPublisherServiceClient(conn)
				return func() outcome { return exchangeGRPC(client, p.deepAny, p.token, c.hostileTimeout) }, func() { conn.Close() }, nil
			}},
		{key: "fields", title: fmt.Sprintf("SSE, no token, private topic, %d unknown fields=", c.hostileFields), want: []string{"401"},
			sender: func(p *hostilePrep, srv *server) (func() outcome, func(), error) {
				head := []byte("GET /v1/events?" + unknownFieldsQuery(hostilePrivate, c.hostileFields) + " HTTP/1.1\r\nHost: " + srv.http + "\r\nAccept: text/event-stream\r\n\r\n")
				return func() outcome { return exchangeHTTP(b.dialer, srv.http, head, nil, c.hostileTimeout) }, func() {}, nil
			}},
		{key: "slow-over", title: fmt.Sprintf("REST publish, token, slow body, %s announced", mb(hostileHuge)), want: []string{"400"}, held: true,
			sender: b.restPublish(true, func(*hostilePrep) []byte { return drip }, hostileHuge)},
		{key: "slow", title: fmt.Sprintf("REST publish, token, slow body, %s announced", mb(c.hostileSlowLength)), want: []string{"400", "429"}, held: true,
			sender: b.restPublish(true, func(*hostilePrep) []byte { return drip }, c.hostileSlowLength)},
	}
	var kinds []hostileKind
	for name := range strings.SplitSeq(c.hostileKindList, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		i := slices.IndexFunc(all, func(k hostileKind) bool { return k.key == name })
		if i < 0 {
			return nil, fmt.Errorf("--hostile-kinds: unknown kind %q (known: %s)", name, strings.Join(hostileKeys, ", "))
		}
		kinds = append(kinds, all[i])
	}
	return kinds, nil
}

// restPublish is the sender of REST publishes to hostileTopic of body,
// announcing length bytes (negative: the body's), with the run's token if
// token is set.
func (b *bench) restPublish(token bool, body func(*hostilePrep) []byte, length int) func(*hostilePrep, *server) (func() outcome, func(), error) {
	return func(p *hostilePrep, srv *server) (func() outcome, func(), error) {
		bd, n := body(p), length
		if n < 0 {
			n = len(bd)
		}
		head := "POST /v1/topics/" + hostileTopic + "/events HTTP/1.1\r\nHost: " + srv.http + "\r\nContent-Type: application/json\r\n"
		if token {
			head += "Authorization: Bearer " + p.token + "\r\n"
		}
		h := fmt.Appendf(nil, "%sContent-Length: %d\r\n\r\n", head, n)
		return func() outcome { return exchangeHTTP(b.dialer, srv.http, h, bd, b.cfg.hostileTimeout) }, func() {}, nil
	}
}

func kb(n int) string { return fmt.Sprintf("%.0f KB", float64(n)/1e3) }
func mb(n int) string { return fmt.Sprintf("%g MB", float64(n)/1e6) }

// prepareHostile writes the secret and builds the token and payloads.
func (b *bench) prepareHostile() (*hostilePrep, error) {
	c := b.cfg
	if b.heraldBin == "" {
		return nil, errors.New("scenario hostile starts its own secured server: it cannot use --target")
	}
	path, secret, err := writeSecret(b.dir)
	if err != nil {
		return nil, err
	}
	p := &hostilePrep{}
	// Builds from before the flag's rename take the file as --auth-hs256-secret.
	flag := "--auth-hs256-secret-file"
	if !hasFlag(b.heraldBin, "auth-hs256-secret-file") {
		flag = "--auth-hs256-secret"
	}
	p.args = []string{flag, path, "--public-topics", "public.>"}
	if hasFlag(b.heraldBin, "body-read-timeout") {
		p.args = append(p.args, "--body-read-timeout", c.hostileBodyTimeout.String())
		p.bodyTimeout = c.hostileBodyTimeout
	}
	if p.token, err = mintToken(secret, []string{"hostile.>"}, nil, hostileTTL); err != nil {
		return nil, err
	}
	p.deepJSON = nestedAnyJSONBody(c.hostileJSONDepth)
	payload, depth := nestedAnyBinary(c.hostileGRPCBytes)
	p.deepAny, p.anyDepth = &heraldv1.PublishRequest{Topic: hostileTopic, Payload: payload}, depth
	return p, nil
}

// hostile runs scenario 7: each kind in turn, on a fresh server, --repeat
// times. Each kind's CPU per request is also given as a multiple of the
// baseline's in the same run.
func (b *bench) hostile() {
	blank := func(key, title, note string, run int) *result {
		return &result{Scenario: "hostile-" + key, Title: "7 " + title, Server: "herald", Run: run, Note: note}
	}
	kinds, err := b.hostileKinds()
	if err == nil && len(kinds) == 0 {
		err = errors.New("--hostile-kinds: none")
	}
	var p *hostilePrep
	if err == nil {
		p, err = b.prepareHostile()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "7 hostile failed: %v\n", err)
		b.results = append(b.results, blank("baseline", "hostile", err.Error(), 1))
		return
	}
	fmt.Fprintf(os.Stderr, "7 hostile: %s; gRPC payload %d Any deep, %d bytes\n", strings.Join(p.args, " "), p.anyDepth, len(p.deepAny.GetPayload().GetValue()))
	for run := 1; run <= b.cfg.repeat; run++ {
		var base *result
		for _, k := range kinds {
			b.waitQuiet()
			fmt.Fprintf(os.Stderr, "7 %-60s ...", k.title)
			r, err := b.runHostile(k, p)
			if err != nil {
				fmt.Fprintf(os.Stderr, " failed: %v\n", err)
				b.results = append(b.results, blank(k.key, k.title, err.Error(), run))
				continue
			}
			if k.key == "baseline" {
				base = r
			}
			if base != nil && base.CPUPerRequest > 0 {
				r.VsBaseline = r.CPUPerRequest / base.CPUPerRequest
			}
			r.Run = run
			fmt.Fprintf(os.Stderr, " %s\n", r.brief())
			b.results = append(b.results, r)
		}
	}
}

// runHostile sends one kind at --hostile-rate to a fresh secured server:
// for the warm-up (unless the kind is held), then for the window, and
// waits for every request of the window to be answered or given up on.
// CPU is measured from the window's start until then, so that a server
// that answers late is charged for all the work the window's requests
// cost it; answers per second are over the same span.
func (b *bench) runHostile(k hostileKind, p *hostilePrep) (*result, error) {
	c := b.cfg
	r := &result{Scenario: "hostile-" + k.key, Title: "7 " + k.title, Server: "herald", Rate: c.hostileRate,
		Expected: k.want, BodyTimeout: p.bodyTimeout.Seconds()}
	srv, err := b.startHeraldWith(r.Scenario, false, p.args...)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	send, done, err := k.sender(p, srv)
	if err != nil {
		return nil, err
	}
	defer done()
	<-time.After(c.settle)
	r.RSSBefore = srv.rss()
	peaks := samplePeaks(srv, &scraper{}, 100*time.Millisecond)

	warm := newTally(time.Now())
	if !k.held && c.warmup > 0 {
		fire(c.hostileRate, time.Now().Add(c.warmup), c.tick, send, warm)
	}
	from := time.Now()
	meas := newTally(from)
	a := snapCPU(srv.pid)
	profDone := b.profile(srv, r.Scenario, c.duration)
	r.Requests = fire(c.hostileRate, from.Add(c.duration), c.tick, send, meas)
	meas.wait()
	z := snapCPU(srv.pid)
	profDone()
	rssPeak, _ := peaks()
	r.RSSAfter = srv.rss()
	r.RSSPeak = max(rssPeak, r.RSSBefore, r.RSSAfter)
	warm.wait()
	if !srv.alive() {
		return nil, errors.New("the server exited during the run")
	}

	b.cpu(r, a, z)
	r.Statuses = meas.statuses
	r.MostOpen = meas.mostOpen()
	expected := int64(0)
	for s, t := range r.Statuses {
		if s != noAnswer && s != closedStatus {
			r.Answered += t.N
		}
		if slices.Contains(k.want, s) {
			expected += t.N
		}
	}
	r.Unexpected = r.Requests - expected
	r.AnsweredPerSec = float64(r.Answered) / r.Window
	if r.Requests > 0 {
		r.CPUPerRequest = r.ServerCPU / float64(r.Requests) * 1e6
		r.CPUResolution = clockTick.Seconds() / float64(r.Requests) * 1e6
	}
	return r, nil
}
