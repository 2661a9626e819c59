package bridge

import (
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"cel.dev/cel-go/common/types"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"

	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	"github.com/heraldhq/herald/internal/broker"
)

// BenchmarkFilterEval evaluates one compiled filter over an event's CEL
// variables, built once as the hub builds them: the cost of each distinct
// filter per event.
func BenchmarkFilterEval(b *testing.B) {
	c := newFilterCache()
	f, err := c.compile(`payload.room != "none-1" && payload.author == "herald-bench"`)
	if err != nil {
		b.Fatal(err)
	}
	msg := &chatv1.ChatMessage{Room: "bench.t00001", MessageId: "0000000001.1767225600123456789", Author: "herald-bench", Text: "hello"}
	vars := filterActivation(protoregistry.GlobalTypes, "chat.v1.ChatMessage", "bench.t00001", nil, msg)
	b.ReportAllocs()
	for b.Loop() {
		out, _, err := f.prog.Eval(vars)
		if err != nil || out != types.True {
			b.Fatal(fmt.Sprint(out, err))
		}
	}
}

// TestEachFilterOnceAnEvent: however many shards and subscribers ask at
// once, a node evaluates a filter once per event. A filter that fails on
// the event counts each evaluation in herald_filter_errors_total.
func TestEachFilterOnceAnEvent(t *testing.T) {
	m := newMetrics()
	h := newHub(epochBroker{}, protoregistry.GlobalTypes, slog.New(slog.DiscardHandler), m, 4)
	failing, err := h.filters.compile(`payload.no_such_field == 1`)
	if err != nil {
		t.Fatal(err)
	}
	passing, err := h.filters.compile(`payload.room == "lobby"`)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := proto.Marshal(&chatv1.ChatMessage{Room: "lobby"})
	if err != nil {
		t.Fatal(err)
	}
	ev := &broker.Event{Topic: "chat.lobby", Type: "chat.v1.ChatMessage", TypeURL: "type.googleapis.com/chat.v1.ChatMessage", Payload: payload}
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if h.matches(ev, failing) || !h.matches(ev, passing) {
				t.Error("the filters' results are wrong")
			}
		})
	}
	wg.Wait()
	var d dto.Metric
	if err := m.filterErrors.Write(&d); err != nil {
		t.Fatal(err)
	}
	if n := d.GetCounter().GetValue(); n != 1 {
		t.Fatalf("the failing filter was evaluated %v times for one event, want once", n)
	}
}
