package outage

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/broker/outagetest"
	"github.com/heraldhq/herald/internal/poll"
)

func TestOneLineEachWayPerOutage(t *testing.T) {
	var buf outagetest.Log
	o := &Log{Logger: slog.New(slog.NewTextHandler(&buf, nil)), Broker: "test"}
	before := time.Now()
	o.Down(errors.New("refused"), before)
	o.Down(errors.New("refused again"), time.Now())
	if !o.Out() {
		t.Fatal("not out after a failure")
	}
	o.Up()
	o.Up()
	// A late failure of a call begun before the recovery starts nothing.
	o.Down(errors.New("late"), before)
	if o.Out() {
		t.Fatal("a call begun before the recovery started a new outage")
	}
	got := buf.String()
	if strings.Count(got, "broker unavailable") != 1 || strings.Count(got, "broker back") != 1 || !strings.Contains(got, "broker=test") {
		t.Fatalf("log:\n%s", got)
	}
	o.Down(errors.New("again"), time.Now())
	if !o.Out() || buf.Count("broker unavailable") != 2 {
		t.Fatal("a new outage after the recovery was not logged")
	}
}

// A broker that passes the health check and then fails calls again, over
// and over, is one outage: logged once each way, the recovery once it has
// lasted Settle. Out follows every recovery and failure at once.
func TestRecoveriesThatDoNotLastAreOneOutage(t *testing.T) {
	var buf outagetest.Log
	o := &Log{Logger: slog.New(slog.NewTextHandler(&buf, nil)), Broker: "test", Settle: time.Hour}
	o.Down(errors.New("refused"), time.Now())
	for range 5 {
		o.Up()
		if o.Out() {
			t.Fatal("still out after a recovery")
		}
		o.Down(errors.New("refused after the check passed"), time.Now())
		if !o.Out() {
			t.Fatal("not out after a failure")
		}
	}
	if n, m := buf.Count("broker unavailable"), buf.Count("broker back"); n != 1 || m != 0 {
		t.Fatalf("%d × broker unavailable, %d × broker back; want 1 and 0:\n%s", n, m, buf.String())
	}

	// A recovery that lasts is logged, once, with the outage's whole length.
	o.Settle = 10 * time.Millisecond
	o.Up()
	poll.Until(t, 5*time.Second, `"broker back" to be logged`, func() bool { return buf.Count("broker back") == 1 })
	if !strings.Contains(buf.String(), "after=") {
		t.Fatalf("log:\n%s", buf.String())
	}
	// Then a failure is a new outage.
	o.Down(errors.New("again"), time.Now())
	if n := buf.Count("broker unavailable"); n != 2 {
		t.Fatalf("%d × broker unavailable after a recovery that lasted; want 2", n)
	}
	// Closing drops a recovery not yet logged.
	o.Settle = time.Hour
	o.Up()
	o.Close()
	if n := buf.Count("broker back"); n != 1 {
		t.Fatalf("%d × broker back; want 1", n)
	}
}
