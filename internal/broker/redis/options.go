package redis

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/internal/broker/remote"
	"github.com/heraldhq/herald/internal/broker/retention"
)

// Options configure a Broker. Zero values mean the defaults. Every node
// sharing a Redis must use the same Prefix and retention.
type Options struct {
	// URL is the Redis server: redis://[user:password@]host:port/db, or
	// rediss:// for TLS (default redis://127.0.0.1:6379/0).
	URL string
	// Username and Password, when set, override those of the URL (Redis 6
	// ACL user, or the requirepass password with no user).
	Username, Password string
	// TLSCAFile is a PEM file of the CAs that sign the server's certificate
	// (default: the system's roots). Setting any TLS field turns TLS on.
	TLSCAFile string
	// TLSCertFile and TLSKeyFile are a client certificate and its key.
	TLSCertFile, TLSKeyFile string
	// TLSInsecureSkipVerify accepts any server certificate. For tests only.
	TLSInsecureSkipVerify bool

	// Prefix starts every key, as "{prefix}:" (default "herald").
	Prefix string
	// MaxEvents is how many events each topic retains (default 1000).
	MaxEvents int
	// MaxAge is how long an event is retained (default 1h).
	MaxAge time.Duration
	// IdempotencyWindow is how long an idempotency key is remembered
	// (default 2m).
	IdempotencyWindow time.Duration
	// FanInWindow is how long the fan-in stream keeps events for nodes
	// that reconnect (default 1m). A node away for longer catches up from
	// the topic streams instead, which costs more.
	FanInWindow time.Duration
	// Timeout bounds each call to Redis (default 3s).
	Timeout time.Duration
	// Logger receives outage and recovery lines (default slog.Default()).
	Logger *slog.Logger
}

// Defaults for Options.
const (
	DefaultURL         = "redis://127.0.0.1:6379/0"
	DefaultPrefix      = "herald"
	DefaultFanInWindow = time.Minute
	DefaultTimeout     = 3 * time.Second
)

func (o *Options) setDefaults() error {
	o.URL = cmp.Or(o.URL, DefaultURL)
	o.Prefix = cmp.Or(o.Prefix, DefaultPrefix)
	if strings.ContainsAny(o.Prefix, "{}") {
		return fmt.Errorf("redis: Prefix %q must not contain braces", o.Prefix)
	}
	retention.Default(&o.MaxEvents, &o.MaxAge, &o.IdempotencyWindow)
	if o.FanInWindow <= 0 {
		o.FanInWindow = DefaultFanInWindow
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	o.Logger = cmp.Or(o.Logger, slog.Default())
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		return errors.New("redis: TLSCertFile and TLSKeyFile go together")
	}
	return nil
}

func (o *Options) clientOptions() (*goredis.Options, error) {
	c, err := goredis.ParseURL(o.URL)
	if err != nil {
		return nil, fmt.Errorf("redis: URL: %w", err)
	}
	if o.Username != "" {
		c.Username = o.Username
	}
	if o.Password != "" {
		c.Password = o.Password
	}
	if files := (remote.TLSFiles{CAFile: o.TLSCAFile, CertFile: o.TLSCertFile, KeyFile: o.TLSKeyFile, InsecureSkipVerify: o.TLSInsecureSkipVerify}); files.Set() {
		if c.TLSConfig == nil {
			c.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: strings.Split(c.Addr, ":")[0]}
		}
		if err := files.Apply(c.TLSConfig); err != nil {
			return nil, fmt.Errorf("redis: %w", err)
		}
	}
	c.DialTimeout = o.Timeout
	c.ReadTimeout = o.Timeout
	c.WriteTimeout = o.Timeout
	c.PoolTimeout = o.Timeout
	c.ContextTimeoutEnabled = true
	c.MaxRetries = -1   // a retried script could append an event twice
	c.DialerRetries = 1 // a refused dial fails the call at once
	c.DisableIdentity = true
	return c, nil
}
