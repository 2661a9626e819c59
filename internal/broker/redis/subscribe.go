package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	goredis "github.com/redis/go-redis/v9"
)

// readBlock is how long one XREAD waits for new entries.
const readBlock = 5 * time.Second

// A subscription is one XREAD loop on a connection of its own, so that
// halting it can interrupt a blocked read by closing that connection.
type subscription struct {
	rdb     *goredis.Client
	cancel  context.CancelFunc
	stopped atomic.Bool
	once    sync.Once
	release func() bool
}

func (s *subscription) halt() {
	s.once.Do(func() {
		s.stopped.Store(true)
		s.cancel()
		_ = s.rdb.Close()
		if s.release != nil {
			s.release()
		}
	})
}

// Subscribe implements broker.Broker: it reads the fan-in stream from the
// entry that is last now, so every event accepted after Subscribe returns
// is delivered, in sequence order, each once.
func (b *Broker) Subscribe(ctx context.Context, deliver func(*broker.Event)) error {
	if err := b.usable(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	cctx, cancel := b.bounded(ctx)
	defer cancel()
	pos, err := positionScript.Run(cctx, b.rdb, []string{b.keys.epoch, b.keys.seq, b.keys.all}, b.epoch).Slice()
	if err != nil {
		return b.fail(cctx, "subscribe", err)
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
	runCtx, stopRun := context.WithCancel(context.Background())
	s := &subscription{rdb: goredis.NewClient(&copts), cancel: stopRun}
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		s.halt()
		return fmt.Errorf("%w: broker is closed", broker.ErrClosed)
	}
	b.subs[s] = struct{}{}
	b.wg.Add(1)
	b.mu.Unlock()
	s.release = context.AfterFunc(ctx, s.halt)
	go b.run(runCtx, s, cursor, uint64(seq), deliver)
	return nil
}

func (b *Broker) run(ctx context.Context, s *subscription, cursor string, last uint64, deliver func(*broker.Event)) {
	defer b.wg.Done()
	defer func() {
		b.mu.Lock()
		delete(b.subs, s)
		b.mu.Unlock()
		s.halt()
	}()
	wait := 100 * time.Millisecond
	for !s.stopped.Load() {
		if b.broken.Load() != nil {
			return // another log: deliver nothing more
		}
		streams, err := s.rdb.XRead(ctx, &goredis.XReadArgs{Streams: []string{b.keys.all, cursor}, Count: 512, Block: readBlock}).Result()
		if errors.Is(err, goredis.Nil) {
			continue
		}
		if err != nil {
			if s.stopped.Load() || b.closed.Load() {
				return
			}
			// The monitor decides whether this is an outage, and logs it
			// once; a subscription only retries.
			b.kick()
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, 2*time.Second)
			continue
		}
		wait = 100 * time.Millisecond
		b.confirm()
		for _, st := range streams {
			for _, m := range st.Messages {
				cursor = m.ID
				seq, err := strconv.ParseUint(fmt.Sprint(m.Values["s"]), 10, 64)
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
				if s.stopped.Load() {
					return
				}
				deliver(ev)
			}
		}
	}
}

// catchUp delivers the events with sequences in (last, next) from the topic
// streams. It reports false when the subscription must end.
func (b *Broker) catchUp(ctx context.Context, s *subscription, last, next uint64, deliver func(*broker.Event)) bool {
	all, _ := broker.ParsePattern(">")
	for {
		rctx, cancel := context.WithTimeout(ctx, 10*b.opts.Timeout)
		res, err := b.Replay(rctx, []broker.Pattern{all}, broker.EventID{Epoch: b.epoch, Seq: last})
		cancel()
		if err == nil {
			missing := next - last - 1
			n := uint64(0)
			for _, ev := range res.Events {
				if ev.Seq >= next {
					break
				}
				if s.stopped.Load() {
					return false
				}
				deliver(ev)
				n++
			}
			if n < missing {
				b.log.Warn("this node missed events that retention removed while it was away from Redis", "missed", missing-n, "after", last, "before", next)
			}
			return true
		}
		if s.stopped.Load() || b.usable() != nil {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Second):
		}
	}
}
