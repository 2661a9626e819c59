package redis

import (
	"log/slog"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/redis/redistest"
	"github.com/heraldhq/herald/internal/poll"
)

// retained is a broker on a Redis of its own, with a plain client to look
// at what the publish script left in Redis.
type retained struct {
	t   *testing.T
	b   *Broker
	rdb *goredis.Client
}

func newRetained(t *testing.T, opts Options) *retained {
	t.Helper()
	srv := redistest.Start(t, redistest.Options{})
	opts.URL, opts.Prefix = srv.URL(), "keep"
	opts.Timeout, opts.Logger = 5*time.Second, slog.New(slog.DiscardHandler)
	b, err := New(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	o, err := goredis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := goredis.NewClient(o)
	t.Cleanup(func() { rdb.Close() })
	return &retained{t: t, b: b, rdb: rdb}
}

func (r *retained) publish(topic string) uint64 {
	r.t.Helper()
	res, err := r.b.Publish(r.t.Context(), &broker.Event{Topic: topic, Type: "t", TypeURL: "type.googleapis.com/t"})
	if err != nil {
		r.t.Fatal(err)
	}
	return res.Seq
}

// stored is how many entries topic's stream holds.
func (r *retained) stored(topic string) int64 {
	r.t.Helper()
	n, err := r.rdb.XLen(r.t.Context(), r.b.keys.topic(topic)).Result()
	if err != nil {
		r.t.Fatal(err)
	}
	return n
}

// cutMark is topic's removal mark, 0 when it has none.
func (r *retained) cutMark(topic string) uint64 {
	r.t.Helper()
	score, err := r.rdb.ZScore(r.t.Context(), r.b.keys.cut, topic).Result()
	if err != nil && err != goredis.Nil {
		r.t.Fatal(err)
	}
	return uint64(score)
}

// Count retention lets a topic hold an eighth more than MaxEvents before
// the script trims it, in one step, back to MaxEvents and marks the
// highest sequence removed; until then Replay serves only the newest
// MaxEvents and says the rest is gone.
func TestCountRetentionTrimsPastTheSlack(t *testing.T) {
	const keep, slack = 40, 5
	r := newRetained(t, Options{MaxEvents: keep})
	var seqs []uint64
	for range keep + slack {
		seqs = append(seqs, r.publish("count.a"))
	}
	if n, mark := r.stored("count.a"), r.cutMark("count.a"); n != keep+slack || mark != 0 {
		t.Fatalf("after %d events: the stream holds %d with removal mark %d; want all %d, unmarked, within the slack", keep+slack, n, mark, keep+slack)
	}
	all, _ := broker.ParsePattern("count.a")
	res, err := r.b.Replay(t.Context(), []broker.Pattern{all}, broker.EventID{Epoch: r.b.Epoch()})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) != keep || res.Events[0].Seq != seqs[slack] || !res.Truncated {
		t.Fatalf("Replay from the start within the slack: %d events from %d, Truncated %v; want the newest %d from %d, Truncated", len(res.Events), res.Events[0].Seq, res.Truncated, keep, seqs[slack])
	}
	res, err = r.b.Replay(t.Context(), []broker.Pattern{all}, broker.EventID{Epoch: r.b.Epoch(), Seq: seqs[slack-1]})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) != keep || res.Truncated {
		t.Fatalf("Replay from the newest event over the limit: %d events, Truncated %v; want %d, not Truncated", len(res.Events), res.Truncated, keep)
	}

	seqs = append(seqs, r.publish("count.a"))
	if n, mark := r.stored("count.a"), r.cutMark("count.a"); n != keep || mark != seqs[slack] {
		t.Fatalf("one event past the slack: the stream holds %d with removal mark %d; want %d, marked at %d", n, mark, keep, seqs[slack])
	}
}

// Age retention removes aged events from Redis, not only from what Replay
// serves: the script looks at a topic's oldest event when the topic takes
// an event whose sequence is a multiple of ageCheckEvery.
func TestAgeRetentionReclaimsAgedEvents(t *testing.T) {
	r := newRetained(t, Options{MaxAge: 200 * time.Millisecond})
	var last uint64
	for range 10 {
		last = r.publish("age.a")
	}
	// Publishing on keeps the topic from the sweeper, which forgets a
	// topic only once its last publish aged out.
	poll.Until(t, 10*time.Second, "the first ten events to age out and a publish to remove them", func() bool {
		r.publish("age.a")
		return r.cutMark("age.a") >= last
	})
	all, _ := broker.ParsePattern("age.a")
	res, err := r.b.Replay(t.Context(), []broker.Pattern{all}, broker.EventID{Epoch: r.b.Epoch()})
	if err != nil {
		t.Fatal(err)
	}
	if n := r.stored("age.a"); n > int64(len(res.Events))+ageCheckEvery {
		t.Errorf("the stream holds %d events where Replay serves %d: more than %d aged ones left in Redis", n, len(res.Events), ageCheckEvery)
	}
}
