package outage

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestOneLineEachWayPerOutage(t *testing.T) {
	var buf bytes.Buffer
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
	if !o.Out() || strings.Count(buf.String(), "broker unavailable") != 2 {
		t.Fatal("a new outage after the recovery was not logged")
	}
}
