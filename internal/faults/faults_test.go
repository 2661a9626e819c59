//go:build faults && linux

package faults

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// jetStreamCluster starts the NATS cluster and three herald nodes on it,
// with Herald's stream replicated to all three servers.
func jetStreamCluster(t *testing.T) (*natsCluster, *cluster) {
	t.Helper()
	needTopology(t)
	nc := startNATS(t, nil)
	c := startCluster(t, "--broker", "nats", "--nats-url", strings.Join(nc.urls, ","), "--nats-replicas", "3")
	return nc, c
}

// Fault 1: one herald node partitioned from every NATS server for 10 s,
// its subscribers and publishers still reaching it, then healed.
func TestFaultNodePartitionedFromBroker(t *testing.T) {
	_, c := jetStreamCluster(t)
	w := startWorkload(t, c, nil)
	w.readMore(50, 30*time.Second, "every subscriber to read 50 events before the fault")

	w.h.Fault(0)
	partition(t, heraldHost[0], natsHost...)
	hold(10 * time.Second)
	heal(t, heraldHost[0])
	w.h.Heal()

	w.readMore(100, 60*time.Second, "every subscriber to read 100 more events after the heal")
	r := w.finish("h1 partitioned from the broker for 10 s")
	if r.FailFast < 0 {
		t.Errorf("h1 refused no publish while cut off from the broker; want UNAVAILABLE / 503 within %v", brokerTimeout)
	}
	if r.Recovery < 0 {
		t.Errorf("h1 acknowledged no publish after the heal")
	}
}

// Fault 6: one herald node frozen with SIGSTOP for 20 s, then SIGCONT.
// Its streams and calls hang meanwhile; NATS may drop its connection as
// stale.
func TestFaultNodeFrozen(t *testing.T) {
	_, c := jetStreamCluster(t)
	w := startWorkload(t, c, nil)
	w.readMore(50, 30*time.Second, "every subscriber to read 50 events before the fault")

	frozen := c.nodes[1]
	w.h.Fault(1)
	frozen.signal(t, syscall.SIGSTOP)
	hold(20 * time.Second)
	frozen.signal(t, syscall.SIGCONT)
	w.h.Heal()

	w.readMore(100, 60*time.Second, "every subscriber to read 100 more events after SIGCONT")
	r := w.finish("h2 frozen (SIGSTOP) for 20 s")
	if r.Recovery < 0 {
		t.Errorf("h2 acknowledged no publish after SIGCONT")
	}
}
