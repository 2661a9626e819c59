package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/remote"
)

// readBlock is how long one XREAD waits for new entries.
const readBlock = 5 * time.Second

// Subscribe implements broker.Broker: it reads the fan-in stream from the
// entry that is last now, so every event accepted after Subscribe returns
// is delivered, in sequence order, each once. Each subscription reads on a
// connection of its own, so that halting it can interrupt a blocked read
// by closing that connection.
func (b *Broker) Subscribe(ctx context.Context, deliver func(*broker.Event)) error {
	cctx, cancel, err := b.link.Begin(ctx)
	defer cancel()
	if err != nil {
		return err
	}
	pos, err := positionScript.Run(cctx, b.rdb, []string{b.keys.epoch, b.keys.seq, b.keys.all}, b.epoch).Slice()
	if err != nil {
		return b.link.Fail(cctx, "subscribe", err)
	}
	if len(pos) != 2 {
		return fmt.Errorf("%w: redis: position script answered %v", broker.ErrUnavailable, pos)
	}
	seq, _ := pos[0].(int64)
	cursor, _ := pos[1].(string)

	copts := *b.copts
	copts.PoolSize = 1
	copts.MinIdleConns = 0
	copts.ReadTimeout = readBlock + b.opts.Timeout
	rdb := goredis.NewClient(&copts)
	return b.link.Subscribe(ctx, func() { _ = rdb.Close() }, func(ctx context.Context, s *remote.Subscription) {
		b.run(ctx, s, rdb, cursor, uint64(seq), deliver)
	})
}

// run delivers from the fan-in stream until the subscription halts.
func (b *Broker) run(ctx context.Context, s *remote.Subscription, rdb *goredis.Client, cursor string, last uint64, deliver func(*broker.Event)) {
	wait := 100 * time.Millisecond
	for !s.Stopped() {
		if b.link.Broken() != nil {
			return // another log: deliver nothing more
		}
		streams, err := rdb.XRead(ctx, &goredis.XReadArgs{Streams: []string{b.keys.all, cursor}, Count: 512, Block: readBlock}).Result()
		if errors.Is(err, goredis.Nil) {
			continue
		}
		if err != nil {
			if s.Stopped() || b.link.Closed() {
				return
			}
			// The monitor decides whether this is an outage, and logs it
			// once; a subscription only retries.
			b.link.Kick()
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, 2*time.Second)
			continue
		}
		wait = 100 * time.Millisecond
		b.link.Confirm()
		for _, st := range streams {
			for _, m := range st.Messages {
				cursor = m.ID
				text, _ := m.Values["s"].(string)
				seq, err := strconv.ParseUint(text, 10, 64)
				if err != nil {
					b.log.Warn("skipping a fan-in entry without a sequence", "id", m.ID)
					continue
				}
				if seq <= last {
					continue // delivered already
				}
				if seq > last+1 {
					// Away longer than the fan-in window: the events in
					// between come from the topic streams.
					if !b.catchUp(ctx, s, last, seq, deliver) {
						return
					}
				}
				last = seq
				ev, err := decodeFields(seq, m.Values)
				if err != nil {
					b.log.Warn("skipping a malformed event", "seq", seq, "err", err)
					continue
				}
				if s.Stopped() {
					return
				}
				deliver(ev)
			}
		}
	}
}
