package jetstream

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/internal/broker"
)

// Presence and revocations live in two key-value buckets, made on first
// use: "<STREAM>_PRESENCE" (in memory: a report is worth seconds) holds
// each node's report under its name, and "<STREAM>_REVOKED" (on file, with
// the streams' replicas) each revoked subject, base64url-encoded as a key,
// with the time it is revoked until. The presence bucket's TTL (MaxAge)
// removes the reports of nodes that stopped; as it is one TTL for the
// bucket, each report also carries its own expiry, which Presence checks.

var (
	_ broker.PresenceStore = (*Broker)(nil)
	_ broker.Revoker       = (*Broker)(nil)
)

// kvState holds the buckets once made.
type kvState struct {
	mu          sync.Mutex
	presence    natsjs.KeyValue
	presenceTTL time.Duration
	revoked     natsjs.KeyValue
}

// presenceBucket returns the presence bucket, made (or its TTL raised) so
// that it keeps a report at least ttl.
func (b *Broker) presenceBucket(ctx context.Context, ttl time.Duration) (natsjs.KeyValue, error) {
	b.kv.mu.Lock()
	defer b.kv.mu.Unlock()
	if b.kv.presence != nil && ttl <= b.kv.presenceTTL {
		return b.kv.presence, nil
	}
	name := b.streamName + "_PRESENCE"
	if b.kv.presence == nil {
		if kv, err := b.js.KeyValue(ctx, name); err == nil {
			st, err := kv.Status(ctx)
			if err != nil {
				return nil, err
			}
			b.kv.presence, b.kv.presenceTTL = kv, st.TTL()
			if ttl <= st.TTL() {
				return kv, nil
			}
		} else if !errors.Is(err, natsjs.ErrBucketNotFound) {
			return nil, err
		}
	}
	kv, err := b.js.CreateOrUpdateKeyValue(ctx, natsjs.KeyValueConfig{
		Bucket:      name,
		Description: "Herald: each node's presence report",
		TTL:         max(ttl, b.kv.presenceTTL),
		Storage:     natsjs.MemoryStorage,
		Replicas:    b.opts.Replicas,
	})
	if err != nil {
		return nil, err
	}
	b.kv.presence, b.kv.presenceTTL = kv, max(ttl, b.kv.presenceTTL)
	return kv, nil
}

func (b *Broker) revokedBucket(ctx context.Context) (natsjs.KeyValue, error) {
	b.kv.mu.Lock()
	defer b.kv.mu.Unlock()
	if b.kv.revoked != nil {
		return b.kv.revoked, nil
	}
	kv, err := b.js.CreateOrUpdateKeyValue(ctx, natsjs.KeyValueConfig{
		Bucket:      b.streamName + "_REVOKED",
		Description: "Herald: revoked token subjects",
		Storage:     natsjs.FileStorage,
		Replicas:    b.opts.Replicas,
	})
	if err != nil {
		return nil, err
	}
	b.kv.revoked = kv
	return kv, nil
}

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
	val := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(report)), uint64(time.Now().Add(ttl).UnixNano()))
	val = append(val, report...)
	return b.link.Call(ctx, "report presence", func(ctx context.Context) error {
		return b.withPresence(ctx, ttl, func(kv natsjs.KeyValue) error {
			_, err := kv.Put(ctx, node, val)
			return err
		})
	})
}

// withPresence calls f with the presence bucket. The bucket is kept in
// memory by the servers, so a server (or a whole single-server NATS) that
// restarts comes back without it: f then fails for want of a stream, and
// withPresence makes the bucket again and calls f once more, where every
// report would otherwise fail, each an outage, until this node restarted.
func (b *Broker) withPresence(ctx context.Context, ttl time.Duration, f func(natsjs.KeyValue) error) error {
	kv, err := b.presenceBucket(ctx, ttl)
	if err != nil {
		return err
	}
	err = f(kv)
	if !bucketGone(err) {
		return err
	}
	b.kv.mu.Lock()
	if b.kv.presence == kv {
		b.kv.presence, b.kv.presenceTTL = nil, 0
	}
	b.kv.mu.Unlock()
	if kv, err = b.presenceBucket(ctx, ttl); err != nil {
		return err
	}
	return f(kv)
}

// bucketGone reports whether err says a bucket's stream is not there.
func bucketGone(err error) bool {
	return errors.Is(err, natsjs.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, natsjs.ErrStreamNotFound) || errors.Is(err, natsjs.ErrBucketNotFound)
}

// Presence implements broker.PresenceStore.
func (b *Broker) Presence(ctx context.Context) (map[string][]byte, error) {
	out := make(map[string][]byte)
	err := b.link.Call(ctx, "read presence", func(ctx context.Context) error {
		return b.withPresence(ctx, time.Second, func(kv natsjs.KeyValue) error {
			now := time.Now().UnixNano()
			return eachEntry(ctx, kv, func(e natsjs.KeyValueEntry) {
				v := e.Value()
				if len(v) >= 8 && int64(binary.BigEndian.Uint64(v)) > now {
					out[e.Key()] = v[8:]
				}
			})
		})
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
	key := base64.RawURLEncoding.EncodeToString([]byte(subject))
	return b.link.Call(ctx, "revoke", func(ctx context.Context) error {
		kv, err := b.revokedBucket(ctx)
		if err != nil {
			return err
		}
		if !until.After(time.Now()) {
			err := kv.Purge(ctx, key)
			if errors.Is(err, natsjs.ErrKeyNotFound) {
				err = nil
			}
			return err
		}
		_, err = kv.Put(ctx, key, strconv.AppendInt(nil, until.UnixNano(), 10))
		return err
	})
}

// Revocations implements broker.Revoker. It purges the revocations whose
// time has passed as it finds them.
func (b *Broker) Revocations(ctx context.Context) ([]broker.Revocation, error) {
	var out []broker.Revocation
	err := b.link.Call(ctx, "read revocations", func(ctx context.Context) error {
		kv, err := b.revokedBucket(ctx)
		if err != nil {
			return err
		}
		now := time.Now()
		var stale []string
		err = eachEntry(ctx, kv, func(e natsjs.KeyValueEntry) {
			sub, err1 := base64.RawURLEncoding.DecodeString(e.Key())
			ns, err2 := strconv.ParseInt(string(e.Value()), 10, 64)
			if err1 != nil || err2 != nil {
				return // not Herald's: leave it alone
			}
			until := time.Unix(0, ns)
			if !until.After(now) {
				stale = append(stale, e.Key())
				return
			}
			out = append(out, broker.Revocation{Subject: string(sub), Until: until})
		})
		if err != nil {
			return err
		}
		for _, k := range stale {
			if err := kv.Purge(ctx, k); err != nil && !errors.Is(err, natsjs.ErrKeyNotFound) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// eachEntry calls f with the current value of every key of kv.
func eachEntry(ctx context.Context, kv natsjs.KeyValue, f func(natsjs.KeyValueEntry)) error {
	w, err := kv.WatchAll(ctx, natsjs.IgnoreDeletes())
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("the watch of bucket %s ended", kv.Bucket())
			}
			if e == nil { // the current values are all in
				return nil
			}
			f(e)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
