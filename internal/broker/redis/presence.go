package redis

import (
	"context"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/internal/broker"
)

// Presence and revocations:
//
//	{p}:presence:<node>  a node's report, expiring after its ttl (SET PX)
//	{p}:presence         node → when its report expires (ms), to find the reports without SCAN
//	{p}:revoked          subject → the time it is revoked until (ms), a hash

var (
	_ broker.PresenceStore = (*Broker)(nil)
	_ broker.Revoker       = (*Broker)(nil)
)

func (b *Broker) keyPrefix() string              { return "{" + b.opts.Prefix + "}:" }
func (b *Broker) presenceKey(node string) string { return b.keyPrefix() + "presence:" + node }
func (b *Broker) presenceIndex() string          { return b.keyPrefix() + "presence" }
func (b *Broker) revokedKey() string             { return b.keyPrefix() + "revoked" }

// ReportPresence implements broker.PresenceStore.
func (b *Broker) ReportPresence(ctx context.Context, node string, report []byte, ttl time.Duration) error {
	if err := b.link.Usable(); err != nil {
		return err
	}
	if err := broker.ValidNode(node); err != nil {
		return err
	}
	if err := broker.ValidTTL(ttl); err != nil {
		return err
	}
	expires := time.Now().Add(ttl).UnixMilli()
	return b.link.Call(ctx, "report presence", func(ctx context.Context) error {
		_, err := b.rdb.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			p.Set(ctx, b.presenceKey(node), report, ttl)
			p.ZAdd(ctx, b.presenceIndex(), goredis.Z{Score: float64(expires), Member: node})
			return nil
		})
		return err
	})
}

// Presence implements broker.PresenceStore.
func (b *Broker) Presence(ctx context.Context) (map[string][]byte, error) {
	out := make(map[string][]byte)
	err := b.link.Call(ctx, "read presence", func(ctx context.Context) error {
		now := strconv.FormatInt(time.Now().UnixMilli(), 10)
		if err := b.rdb.ZRemRangeByScore(ctx, b.presenceIndex(), "-inf", now).Err(); err != nil {
			return err
		}
		nodes, err := b.rdb.ZRange(ctx, b.presenceIndex(), 0, -1).Result()
		if err != nil || len(nodes) == 0 {
			return err
		}
		keys := make([]string, len(nodes))
		for i, n := range nodes {
			keys[i] = b.presenceKey(n)
		}
		vals, err := b.rdb.MGet(ctx, keys...).Result()
		if err != nil {
			return err
		}
		for i, v := range vals {
			if s, ok := v.(string); ok { // nil: expired meanwhile
				out[nodes[i]] = []byte(s)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Revoke implements broker.Revoker.
func (b *Broker) Revoke(ctx context.Context, subject string, until time.Time) error {
	if err := b.link.Usable(); err != nil {
		return err
	}
	if err := broker.ValidSubject(subject); err != nil {
		return err
	}
	return b.link.Call(ctx, "revoke", func(ctx context.Context) error {
		if !until.After(time.Now()) {
			return b.rdb.HDel(ctx, b.revokedKey(), subject).Err()
		}
		return b.rdb.HSet(ctx, b.revokedKey(), subject, until.UnixMilli()).Err()
	})
}

// Revocations implements broker.Revoker. It removes the revocations whose
// time has passed as it finds them.
func (b *Broker) Revocations(ctx context.Context) ([]broker.Revocation, error) {
	var out []broker.Revocation
	err := b.link.Call(ctx, "read revocations", func(ctx context.Context) error {
		all, err := b.rdb.HGetAll(ctx, b.revokedKey()).Result()
		if err != nil {
			return err
		}
		now := time.Now()
		var stale []string
		for sub, v := range all {
			ms, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				continue // not Herald's: leave it alone
			}
			until := time.UnixMilli(ms)
			if !until.After(now) {
				stale = append(stale, sub)
				continue
			}
			out = append(out, broker.Revocation{Subject: sub, Until: until})
		}
		if len(stale) > 0 {
			return b.rdb.HDel(ctx, b.revokedKey(), stale...).Err()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
