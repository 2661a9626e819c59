package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/pflag"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/jetstream"
	"github.com/heraldhq/herald/internal/broker/memory"
	"github.com/heraldhq/herald/internal/broker/redis"
)

// brokerFlags choose and configure the broker of `herald serve`.
type brokerFlags struct {
	kind         string
	maxBytes     int64
	timeout      time.Duration
	startTimeout time.Duration
	prefix       string
	tlsCA        string
	tlsCert      string
	tlsKey       string
	tlsInsecure  bool
	natsURL      string
	natsCreds    string
	natsUser     string
	natsPassword string
	natsToken    string
	natsReplicas int
	redisURL     string
	redisUser    string
	redisPass    string
	redisFanIn   time.Duration
}

func (f *brokerFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.kind, "broker", "memory", "where events live: memory (this node only, lost on restart), nats (a NATS JetStream stream shared by every node) or redis (Redis Streams shared by every node)")
	fs.Int64Var(&f.maxBytes, "max-retained-bytes", memory.DefaultMaxBytes, "bytes of history the memory broker keeps across all topics; beyond it the oldest events go first, and clients resuming from before them get herald.gap (memory)")
	fs.DurationVar(&f.timeout, "broker-timeout", jetstream.DefaultTimeout, "longest one call to NATS or Redis may take; beyond it a publish fails with UNAVAILABLE (nats, redis)")
	fs.DurationVar(&f.startTimeout, "broker-start-timeout", 0, "how long serve waits at start for an unreachable broker, serving /healthz (200) and /readyz (503) meanwhile, before it gives up and exits non-zero; 0 waits forever (nats, redis)")
	fs.StringVar(&f.prefix, "broker-prefix", "herald", "names Herald's stream (NATS: stream HERALD, subjects herald.ev.>) or keys (Redis: {herald}:...); nodes of one cluster share it (nats, redis)")
	fs.StringVar(&f.tlsCA, "broker-tls-ca", "", "PEM file of the CAs that sign the broker's certificate; any --broker-tls-* flag turns TLS on (nats, redis; or use rediss://)")
	fs.StringVar(&f.tlsCert, "broker-tls-cert", "", "PEM client certificate for brokers that verify clients; needs --broker-tls-key")
	fs.StringVar(&f.tlsKey, "broker-tls-key", "", "PEM private key for --broker-tls-cert")
	fs.BoolVar(&f.tlsInsecure, "broker-tls-insecure", false, "accept any broker certificate, unverified: for tests only")
	fs.StringVar(&f.natsURL, "nats-url", jetstream.DefaultURL, "NATS server URL, or a comma-separated list of a cluster's servers; may carry user:password@")
	fs.StringVar(&f.natsCreds, "nats-creds", "", "NATS credentials file (JWT and NKey seed)")
	fs.StringVar(&f.natsUser, "nats-user", "", "NATS user name (with --nats-password)")
	fs.StringVar(&f.natsPassword, "nats-password", "", "NATS password; prefer the environment variable to the command line")
	fs.StringVar(&f.natsToken, "nats-token", "", "NATS authentication token; prefer the environment variable to the command line")
	fs.IntVar(&f.natsReplicas, "nats-replicas", 1, "JetStream replicas of Herald's streams: 1, or 3 or 5 on a NATS cluster")
	fs.StringVar(&f.redisURL, "redis-url", redis.DefaultURL, "Redis URL: redis://[user:password@]host:port/db, rediss:// for TLS")
	fs.StringVar(&f.redisUser, "redis-username", "", "Redis ACL user name (overrides the URL's)")
	fs.StringVar(&f.redisPass, "redis-password", "", "Redis password (overrides the URL's); prefer the environment variable to the command line")
	fs.DurationVar(&f.redisFanIn, "redis-fanin-window", redis.DefaultFanInWindow, "how long Redis keeps every event in the fan-in stream that nodes read; a node away longer catches up from the topic streams")
}

// A backend is a broker that also stores pushed schemas.
type backend interface {
	broker.Broker
	broker.SchemaStore
}

// validate checks the broker flags without connecting.
func (f *brokerFlags) validate() error {
	switch f.kind {
	case "memory", "nats", "redis":
	default:
		return fmt.Errorf("serve: --broker is %q; want memory, nats or redis", f.kind)
	}
	if f.maxBytes <= 0 {
		return fmt.Errorf("serve: --max-retained-bytes must be positive, got %d", f.maxBytes)
	}
	if f.timeout <= 0 {
		return fmt.Errorf("serve: --broker-timeout must be positive, got %v", f.timeout)
	}
	if f.startTimeout < 0 {
		return fmt.Errorf("serve: --broker-start-timeout must be 0 (wait forever) or positive, got %v", f.startTimeout)
	}
	return nil
}

// open returns the chosen broker with the given retention. The flags must
// have passed validate.
func (f *brokerFlags) open(ctx context.Context, events int, age, idempotency time.Duration, log *slog.Logger) (backend, error) {
	switch f.kind {
	case "memory":
		return memory.New(memory.Options{MaxEvents: events, MaxAge: age, IdempotencyWindow: idempotency, MaxBytes: f.maxBytes}), nil
	case "nats":
		b, err := jetstream.New(ctx, jetstream.Options{
			URL: f.natsURL, CredsFile: f.natsCreds, User: f.natsUser, Password: f.natsPassword, Token: f.natsToken,
			TLSCAFile: f.tlsCA, TLSCertFile: f.tlsCert, TLSKeyFile: f.tlsKey, TLSInsecureSkipVerify: f.tlsInsecure,
			Prefix: f.prefix, Replicas: f.natsReplicas,
			MaxEvents: events, MaxAge: age, IdempotencyWindow: idempotency,
			Timeout: f.timeout, Logger: log,
		})
		if err != nil {
			return nil, fmt.Errorf("serve: --broker nats: %w", err)
		}
		return faulty(b), nil
	case "redis":
		b, err := redis.New(ctx, redis.Options{
			URL: f.redisURL, Username: f.redisUser, Password: f.redisPass,
			TLSCAFile: f.tlsCA, TLSCertFile: f.tlsCert, TLSKeyFile: f.tlsKey, TLSInsecureSkipVerify: f.tlsInsecure,
			Prefix:    f.prefix,
			MaxEvents: events, MaxAge: age, IdempotencyWindow: idempotency, FanInWindow: f.redisFanIn,
			Timeout: f.timeout, Logger: log,
		})
		if err != nil {
			return nil, fmt.Errorf("serve: --broker redis: %w", err)
		}
		return b, nil
	}
	return nil, f.validate()
}
