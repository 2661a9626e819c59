//go:build faults && linux

package faults

import (
	"context"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// toxics is toxiproxy's server, run in this process (in the client
// namespace): its proxies listen there and dial the nodes over the veth
// network.
type toxics struct{ server *toxiproxy.ApiServer }

func newToxiproxy(t *testing.T) *toxics {
	t.Helper()
	zerolog.SetGlobalLevel(zerolog.Disabled) // the toxics log through the global logger
	return &toxics{server: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())}
}

// link is one proxy: a TCP path whose faults the test sets.
type link struct {
	p     *toxiproxy.Proxy
	names []string
}

// proxy starts a proxy from listen to upstream, stopped at cleanup.
func (x *toxics) proxy(t *testing.T, name, listen, upstream string) *link {
	t.Helper()
	p := toxiproxy.NewProxy(x.server, name, listen, upstream)
	if err := x.server.Collection.Add(p, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = x.server.Collection.Remove(name) })
	return &link{p: p}
}

// toxic adds a toxic, given as toxiproxy's JSON, under name.
func (l *link) toxic(t *testing.T, name, spec string) {
	t.Helper()
	spec = strings.Replace(spec, "{", `{"name":"`+name+`",`, 1)
	if _, err := l.p.Toxics.AddToxicJson(strings.NewReader(spec)); err != nil {
		t.Fatalf("toxic %s: %v", spec, err)
	}
	l.names = append(l.names, name)
}

// reset resets (TCP RST) every connection that carries data towards the
// client for the next 1.5 s, as a flaky network or a restarted middlebox
// does: with heartbeats every second, that is every open stream.
func (l *link) reset(t *testing.T) {
	t.Helper()
	const name = "reset"
	if _, err := l.p.Toxics.AddToxicJson(strings.NewReader(`{"name":"` + name + `","type":"reset_peer","stream":"downstream","attributes":{"timeout":0}}`)); err != nil {
		t.Fatal(err)
	}
	hold(1500 * time.Millisecond)
	if err := l.p.Toxics.RemoveToxic(context.Background(), name); err != nil {
		t.Fatal(err)
	}
}

// clear removes the toxics.
func (l *link) clear(t *testing.T) {
	t.Helper()
	for _, name := range l.names {
		if err := l.p.Toxics.RemoveToxic(context.Background(), name); err != nil {
			t.Fatal(err)
		}
	}
	l.names = nil
}
