package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/bridge"
	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/jetstream"
	"github.com/heraldhq/herald/internal/broker/memory"
	"github.com/heraldhq/herald/internal/broker/outage"
	"github.com/heraldhq/herald/internal/broker/redis"
	"github.com/heraldhq/herald/internal/broker/remote"
	"github.com/heraldhq/herald/internal/heraldtest"
)

// docs/deployment.md tells operators what browsers, publishers and logs
// show when things fail. These tests hold its words to what Herald does:
// the wire and log lines it quotes, the herald.gap reasons, the defaults.

func deploymentDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../docs/deployment.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lockedBuffer is a log that the server writes while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// unreachableHistory is a broker whose history cannot be read, as during
// an outage of a networked broker.
type unreachableHistory struct{ *memory.Broker }

func (unreachableHistory) Replay(context.Context, []broker.Pattern, broker.EventID) (broker.ReplayResult, error) {
	return broker.ReplayResult{}, fmt.Errorf("%w: broker down", broker.ErrUnavailable)
}

// The outage row says what a browser resuming during an outage gets, word
// for word, and what the nodes log.
func TestDeploymentDocBrokerOutage(t *testing.T) {
	var logs lockedBuffer
	mem := memory.New(memory.Options{})
	t.Cleanup(func() { mem.Close() })
	s := heraldtest.Start(t, heraldtest.Options{Config: bridge.Config{
		Broker: unreachableHistory{mem},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	}})
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodGet, s.URL+"/v1/events?topic=orders.>", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Last-Event-ID", mem.Epoch()+"-3")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body) // the server ends the stream
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(body), "\n"), "\n")
	if resp.StatusCode != 200 || len(lines) != 2 || !strings.HasPrefix(lines[0], "retry: ") || !strings.HasPrefix(lines[1], ": ") {
		t.Fatalf("a resume during an outage got %d %q; the test expects a retry line and a comment", resp.StatusCode, body)
	}

	// Backends of other brokers log these, each once per outage (the
	// broker packages' outage tests count them).
	var brokerLogs lockedBuffer
	log := slog.New(slog.NewTextHandler(&brokerLogs, nil))
	o := &outage.Log{Logger: log, Broker: "doc"}
	o.Down(errors.New("refused"), time.Now())
	o.Up()
	remote.New(remote.Options{Logger: log}).Break(errors.New("another log"))

	var row string
	for _, l := range strings.Split(deploymentDoc(t), "\n") {
		if strings.HasPrefix(l, "| the broker is unreachable") {
			row = l
		}
	}
	if row == "" {
		t.Fatal(`docs/deployment.md has no row "| the broker is unreachable"`)
	}
	// The retry is spread between one and two --retry intervals, so that
	// the clients of an outage do not all come back at once.
	ms, err := strconv.Atoi(strings.TrimPrefix(lines[0], "retry: "))
	if err != nil || ms < 2000 || ms > 4000 {
		t.Errorf("a resume during an outage got %q, want a retry between 2000 and 4000 ms", lines[0])
	}
	for _, want := range []string{"`retry:` between 2000 and 4000", "`" + lines[1] + "`"} {
		if !strings.Contains(row, want) {
			t.Errorf("the outage row does not say what a resuming browser gets, %s:\n%s", want, row)
		}
	}
	for _, msg := range []string{"broker unavailable", "broker back", "cannot resume streams while the broker's history is unreadable; clients retry with the same id"} {
		if !strings.Contains(row, "`"+msg+"`") {
			t.Errorf("the outage row does not quote the log line %q", msg)
		}
		if !strings.Contains(logs.String()+brokerLogs.String(), `msg="`+msg) {
			t.Errorf("no log line %q:\n%s%s", msg, logs.String(), brokerLogs.String())
		}
	}
	if doc := deploymentDoc(t); !strings.Contains(doc, "`broker log was reset`") || !strings.Contains(brokerLogs.String(), `msg="broker log was reset`) {
		t.Errorf("the doc or the log lacks %q:\n%s", "broker log was reset", brokerLogs.String())
	}
}

// gapReason resumes a subscription from lastEventID and returns the
// reason of the herald.gap event it starts with.
func gapReason(t *testing.T, base, lastEventID string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/events?topic=doc.>", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Last-Event-ID", lastEventID)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	gap := false
	for sc := bufio.NewScanner(resp.Body); sc.Scan(); {
		line := sc.Text()
		if line == "event: "+bridge.GapEventType {
			gap = true
		}
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			if !gap {
				t.Fatalf("resuming from %q: an event before any %s", lastEventID, bridge.GapEventType)
			}
			var g struct{ Reason string }
			if err := json.Unmarshal([]byte(data), &g); err != nil {
				t.Fatal(err)
			}
			return g.Reason
		}
	}
	t.Fatalf("resuming from %q: the stream ended without a %s", lastEventID, bridge.GapEventType)
	return ""
}

// Every herald.gap reason the doc quotes is one a browser can get.
func TestDeploymentDocGapReasons(t *testing.T) {
	s := heraldtest.Start(t, heraldtest.Options{Memory: memory.Options{MaxEvents: 1}})
	var ids []string
	for range 3 {
		resp, err := heraldv1.NewPublisherServiceClient(s.Conn).Publish(ctxT(t), request(t, "doc.t", &chatv1.ChatMessage{Room: "doc"}))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, resp.GetId())
	}
	reasons := []string{
		gapReason(t, s.URL, ids[0]),    // retention removed what came after it
		gapReason(t, s.URL, "0-1"),     // another epoch
		gapReason(t, s.URL, "not-id!"), // no id of Herald's
	}
	doc := strings.Join(strings.Fields(deploymentDoc(t)), " ")
	quoted := regexp.MustCompile("`herald\\.gap`[^|()\"]{0,40}?\\(?\"([^\"]+)\"").FindAllStringSubmatch(doc, -1)
	if len(quoted) == 0 {
		t.Fatal("docs/deployment.md quotes no herald.gap reason; the test expects some")
	}
	for _, q := range quoted {
		found := false
		for _, r := range reasons {
			found = found || strings.Contains(r, q[1])
		}
		if !found {
			t.Errorf("docs/deployment.md promises a herald.gap with reason %q; Herald's reasons are %q", q[1], reasons)
		}
	}
}

// The defaults the doc names are Herald's.
func TestDeploymentDocDefaults(t *testing.T) {
	doc := strings.Join(strings.Fields(deploymentDoc(t)), " ")
	for _, c := range []struct {
		phrase string
		holds  bool
	}{
		{"(`--heartbeat`, 15 s)", bridge.DefaultHeartbeatInterval == 15*time.Second},
		{"after `retry:` (2 s)", bridge.DefaultRetryInterval == 2*time.Second},
		{"a `retry:` between 2000 and 4000 ms (between `--retry` and twice it", bridge.DefaultRetryInterval == 2*time.Second},
		{"`--idle-timeout` (2 min)", bridge.DefaultIdleTimeout == 2*time.Minute},
		{"`--queue-size` (256)", bridge.DefaultQueueSize == 256},
		{"its queue (256)", bridge.DefaultQueueSize == 256},
		{"--max-event-bytes (1 MiB)", bridge.DefaultMaxEventBytes == 1<<20},
		{"`--broker-timeout` (3 s)", jetstream.DefaultTimeout == 3*time.Second && redis.DefaultTimeout == 3*time.Second},
		{"`--redis-fanin-window` (1 min)", redis.DefaultFanInWindow == time.Minute},
	} {
		if !strings.Contains(doc, c.phrase) {
			t.Errorf("docs/deployment.md no longer says %q: update this test with it", c.phrase)
		} else if !c.holds {
			t.Errorf("docs/deployment.md says %q, which is no longer the default", c.phrase)
		}
	}
}
