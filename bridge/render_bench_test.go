package bridge

import (
	"fmt"
	"log/slog"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"

	ordersv1 "github.com/heraldhq/herald/gen/orders/v1"
	"github.com/heraldhq/herald/internal/broker"
)

// epochBroker is just enough Broker for a hub that is fed by hand.
type epochBroker struct{ broker.Broker }

func (epochBroker) Epoch() string { return "bench" }

// BenchmarkRenderingShared delivers events to n subscribers that share one
// non-default rendering: the encoding is done once per event, so the cost
// per event grows with n only by the queueing, and encodes/event stays 1.
func BenchmarkRenderingShared(b *testing.B) {
	payload, _ := proto.Marshal(&ordersv1.OrderPlaced{OrderId: "o-1", Customer: "Zoë", TotalCents: 4200, Items: []*ordersv1.LineItem{{Sku: "KB-01", Quantity: 1}}})
	render := &Rendering{ProtoNames: true, Fields: []string{"order_id", "total_cents"}}
	types := protoregistry.GlobalTypes
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			m := newMetrics()
			h := newHub(epochBroker{}, types, slog.New(slog.DiscardHandler), m, 4)
			var subs []*subscriber
			for range n {
				s, err := h.subscribe("", []broker.Pattern{mustPattern("orders.eu")}, render, nil)
				if err != nil {
					b.Fatal(err)
				}
				subs = append(subs, s)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				h.deliver(&broker.Event{Topic: "orders.eu", Type: "orders.v1.OrderPlaced", TypeURL: "type.googleapis.com/orders.v1.OrderPlaced", Payload: payload, Seq: uint64(i + 1)})
				for _, s := range subs {
					s.queue.pop()
				}
			}
			b.StopTimer()
			var out dto.Metric
			_ = m.renderings.Write(&out)
			b.ReportMetric(out.GetCounter().GetValue()/float64(b.N), "encodes/event")
		})
	}
}

func mustPattern(s string) broker.Pattern {
	p, err := broker.ParsePattern(s)
	if err != nil {
		panic(err)
	}
	return p
}
