package jetstream

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/retention"
)

// Options configure a Broker. Zero values mean the defaults. Every node
// sharing a stream must use the same Prefix and retention: the last node to
// start applies its settings to the stream.
type Options struct {
	// URL is the NATS server, or a comma-separated list of a cluster's
	// servers (default nats://127.0.0.1:4222). User and password may be
	// given in it (nats://user:pass@host:4222).
	URL string
	// CredsFile is a NATS credentials file (JWT and NKey seed).
	CredsFile string
	// User and Password authenticate with a user name and password.
	User, Password string
	// Token authenticates with a token.
	Token string
	// TLSCAFile is a PEM file of the CAs that sign the server's certificate
	// (default: the system's roots). Setting any TLS field turns TLS on.
	TLSCAFile string
	// TLSCertFile and TLSKeyFile are a client certificate and its key, for
	// servers that verify clients.
	TLSCertFile, TLSKeyFile string
	// TLSInsecureSkipVerify accepts any server certificate. For tests only.
	TLSInsecureSkipVerify bool

	// Prefix names the stream ("herald" → stream HERALD, subjects
	// herald.ev.>, schemas in HERALD_SCHEMAS). Default "herald".
	Prefix string
	// Replicas is the streams' replication factor (1, 3 or 5; default 1).
	Replicas int
	// MaxEvents is how many events each topic retains (default 1000).
	MaxEvents int
	// MaxAge is how long an event is retained (default 1h).
	MaxAge time.Duration
	// IdempotencyWindow is how long an idempotency key is remembered
	// (default 2m; JetStream caps it at MaxAge).
	IdempotencyWindow time.Duration
	// Timeout bounds each call to NATS (default 3s).
	Timeout time.Duration
	// Name is the connection's name as the server shows it (default
	// "herald").
	Name string
	// Logger receives outage and recovery lines (default slog.Default()).
	Logger *slog.Logger
}

// Defaults for Options.
const (
	DefaultURL     = "nats://127.0.0.1:4222"
	DefaultPrefix  = "herald"
	DefaultTimeout = 3 * time.Second
)

func (o *Options) setDefaults() error {
	o.URL = cmp.Or(o.URL, DefaultURL)
	o.Prefix = cmp.Or(o.Prefix, DefaultPrefix)
	if err := broker.ValidateTopic(o.Prefix); err != nil || strings.Contains(o.Prefix, ".") {
		return fmt.Errorf("jetstream: Prefix %q must be one token of A-Z a-z 0-9 _ -", o.Prefix)
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Replicas > 5 {
		return fmt.Errorf("jetstream: Replicas is %d; JetStream allows at most 5", o.Replicas)
	}
	retention.Default(&o.MaxEvents, &o.MaxAge, &o.IdempotencyWindow)
	o.IdempotencyWindow = min(o.IdempotencyWindow, o.MaxAge)
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	o.Name = cmp.Or(o.Name, "herald")
	o.Logger = cmp.Or(o.Logger, slog.Default())
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		return errors.New("jetstream: TLSCertFile and TLSKeyFile go together")
	}
	return nil
}
