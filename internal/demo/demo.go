// Package demo publishes a realistic, continuous stream of the three example
// event types, so that a newcomer running `herald serve --demo` sees events
// at once:
//
//	orders.eu, orders.us            orders.v1.OrderPlaced     an order was placed
//	monitoring.<region>.<server>    monitoring.v1.ServerStats a game server's players and load
//	chat.rooms.<room>               chat.v1.ChatMessage       a message in a chat room
package demo

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	monitoringv1 "github.com/heraldhq/herald/gen/monitoring/v1"
	ordersv1 "github.com/heraldhq/herald/gen/orders/v1"
)

// Files are the example schemas of the events: a registry must know them
// (schema.Options.Compiled) for the demo's publishes to be accepted.
func Files() []protoreflect.FileDescriptor {
	return []protoreflect.FileDescriptor{
		ordersv1.File_orders_v1_orders_proto,
		monitoringv1.File_monitoring_v1_monitoring_proto,
		chatv1.File_chat_v1_chat_proto,
	}
}

// Publisher is the part of herald.v1.PublisherService the demo calls.
type Publisher interface {
	Publish(context.Context, *heraldv1.PublishRequest) (*heraldv1.PublishResponse, error)
	DeleteTopicState(context.Context, *heraldv1.DeleteTopicStateRequest) (*heraldv1.DeleteTopicStateResponse, error)
}

// Run publishes demo events until ctx ends. Orders arrive every second or
// two, every game server reports each second, and chat messages every few
// seconds. Now and then a game server goes down for maintenance: its
// topic's state is deleted, and it reports again a little later.
func Run(ctx context.Context, pub Publisher, log *slog.Logger) {
	d := &demo{
		pub: pub,
		log: log,
		rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7)),
		servers: []*server{
			{id: "eu-1", region: "eu", max: 64, players: 31},
			{id: "eu-2", region: "eu", max: 64, players: 52},
			{id: "us-1", region: "us", max: 100, players: 12},
			{id: "ap-1", region: "ap", max: 32, players: 20},
		},
	}
	stats := time.NewTicker(time.Second)
	defer stats.Stop()
	maintenance := time.NewTicker(45 * time.Second)
	defer maintenance.Stop()
	nextOrder := time.After(300 * time.Millisecond)
	nextChat := time.After(700 * time.Millisecond)
	for {
		select {
		case <-ctx.Done():
			return
		case <-stats.C:
			for _, s := range d.servers {
				if s.down > 0 {
					s.down--
					continue
				}
				d.publish(ctx, serverTopic(s), d.stats(s))
			}
		case <-maintenance.C:
			s := d.servers[d.rng.IntN(len(d.servers))]
			s.down = 15 // seconds
			if _, err := d.pub.DeleteTopicState(ctx, &heraldv1.DeleteTopicStateRequest{Topic: serverTopic(s)}); err != nil && ctx.Err() == nil {
				d.log.Warn("demo: deleting a server's state failed", "err", err)
			}
		case <-nextOrder:
			topic, order := d.order()
			d.publish(ctx, topic, order)
			nextOrder = time.After(time.Duration(800+d.rng.IntN(1400)) * time.Millisecond)
		case <-nextChat:
			room := rooms[d.rng.IntN(len(rooms))]
			d.publish(ctx, "chat.rooms."+room, d.chat(room))
			nextChat = time.After(time.Duration(1500+d.rng.IntN(3000)) * time.Millisecond)
		}
	}
}

type demo struct {
	pub     Publisher
	log     *slog.Logger
	rng     *rand.Rand
	servers []*server
	orders  int
	chats   int
	failed  bool
}

type server struct {
	id, region   string
	max, players int32
	tick         int
	down         int // seconds of maintenance left: no reports
}

func serverTopic(s *server) string { return "monitoring." + s.region + ".game-" + s.id }

func (d *demo) publish(ctx context.Context, topic string, msg proto.Message) {
	payload, err := anypb.New(msg)
	if err == nil {
		_, err = d.pub.Publish(ctx, &heraldv1.PublishRequest{Topic: topic, Payload: payload})
	}
	if err != nil && ctx.Err() == nil && !d.failed {
		d.failed = true // once is enough: the cause will be the same
		d.log.Warn("demo publish failed", "topic", topic, "err", err)
	}
}

var products = []struct {
	sku, name string
	cents     int64
}{
	{"KB-01", "Mechanical keyboard", 12900},
	{"MS-02", "Wireless mouse", 4900},
	{"HS-03", "Headset", 8900},
	{"PD-04", "Gamepad", 5900},
	{"MN-05", "27\" monitor", 32900},
	{"GC-06", "Gift card", 2500},
}

var customers = []string{"Ada Lovelace", "Grace Hopper", "Linus T.", "Zoë Müller", "José Álvarez", "山田 太郎", "Priya Natarajan", "Olamide Bello"}

func (d *demo) order() (string, *ordersv1.OrderPlaced) {
	d.orders++
	topic, currency := "orders.eu", "EUR"
	if d.rng.IntN(2) == 0 {
		topic, currency = "orders.us", "USD"
	}
	o := &ordersv1.OrderPlaced{
		OrderId:  fmt.Sprintf("ord-%06d", d.orders),
		Customer: customers[d.rng.IntN(len(customers))],
		Currency: currency,
		PlacedAt: timestamppb.Now(),
		Channel:  ordersv1.Channel(1 + d.rng.IntN(3)),
	}
	for range 1 + d.rng.IntN(3) {
		p := products[d.rng.IntN(len(products))]
		q := int32(1 + d.rng.IntN(2))
		o.Items = append(o.Items, &ordersv1.LineItem{Sku: p.sku, Name: p.name, Quantity: q, UnitPriceCents: p.cents})
		o.TotalCents += int64(q) * p.cents
	}
	return topic, o
}

func (d *demo) stats(s *server) *monitoringv1.ServerStats {
	s.tick++
	s.players += int32(d.rng.IntN(7)) - 3
	s.players = min(max(s.players, 0), s.max)
	load := 0.15 + 0.7*float64(s.players)/float64(s.max) + 0.05*math.Sin(float64(s.tick)/5)
	return &monitoringv1.ServerStats{
		ServerId:      "game-" + s.id,
		Region:        s.region,
		OnlinePlayers: s.players,
		MaxPlayers:    s.max,
		CpuLoad:       math.Round(min(load, 1)*1000) / 1000,
		TickRate:      math.Round((64-12*max(load-0.8, 0)*5)*10) / 10,
		ObservedAt:    timestamppb.Now(),
	}
}

var rooms = []string{"lobby", "eu-raid", "support"}

var lines = []struct{ author, text string }{
	{"mira", "anyone up for a raid tonight? 🗡️"},
	{"kenji", "こんばんは！ I'm in"},
	{"sam", "server eu-2 feels laggy again"},
	{"ops-bot", "eu-2 tick rate is back to 64 ✅"},
	{"lena", "GG everyone 🎉"},
	{"omar", "who has the \"dragon\" quest item?"},
	{"zoë", "brb — coffee ☕"},
	{"mira", "line one\nline two: multi-line messages work too"},
}

func (d *demo) chat(room string) *chatv1.ChatMessage {
	d.chats++
	l := lines[d.rng.IntN(len(lines))]
	return &chatv1.ChatMessage{
		Room:      room,
		MessageId: fmt.Sprintf("msg-%06d", d.chats),
		Author:    l.author,
		Text:      l.text,
		SentAt:    timestamppb.Now(),
	}
}
