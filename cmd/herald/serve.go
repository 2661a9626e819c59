package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/heraldhq/herald/bridge"
	"github.com/heraldhq/herald/internal/broker/memory"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/console"
	"github.com/heraldhq/herald/internal/demo"
	"github.com/heraldhq/herald/internal/schema"
	"github.com/heraldhq/herald/internal/tracing"
	"github.com/heraldhq/herald/internal/web"
)

const serveSynopsis = `Runs a Herald node, on the embedded in-memory broker or (--broker nats|redis) on
NATS JetStream or Redis Streams shared by every node of a cluster:
  HTTP  (--http-addr)  GET /v1/events?topic=...    Server-Sent Events (topics may repeat; * and > patterns)
                       POST /v1/topics/{topic}/events   publish over REST (JSON)
                       DELETE /v1/topics/{topic}/state  mark a topic's state deleted (herald.deleted)
                       GET /v1/schemas  GET /v1/schemas/{name}  POST /v1/schemas   list, describe, register payload types
                       GET /v1/topics  GET /v1/topics/{topic}/events  GET /v1/nodes     the admin API (an admin
                       GET /v1/revocations  POST /v1/revocations              token; docs/admin.md)
                       GET /v1/openapi.json  GET /healthz  GET /readyz  GET /metrics
                       GET /console   the operator console (docs/console.md; off with --console=false)
                       GET /   the live demo page, with --demo only
  gRPC  (--grpc-addr)  herald.v1.PublisherService (Publish, PublishStream, DeleteTopicState), herald.v1.SubscriberService,
                       herald.v1.SchemaService, herald.v1.AdminService, grpc.health.v1.Health, server reflection
With --broker nats|redis the node starts before its broker if need be: it waits for it, serving
/healthz (200) and /readyz (503), up to --broker-start-timeout (0: for ever).
SIGTERM or SIGINT shuts down gracefully within --shutdown-timeout.
Tracing is off unless OTEL_TRACES_EXPORTER=otlp; the standard OTEL_* variables configure it (docs/operations.md).`

// serveConfig holds the settings of `herald serve`, one field per flag.
type serveConfig struct {
	configFile        string
	httpAddr          string
	grpcAddr          string
	maxEventBytes     int
	retentionEvents   int
	retentionAge      time.Duration
	idempotencyWindow time.Duration
	heartbeat         time.Duration
	retry             time.Duration
	queueSize         int
	writeTimeout      time.Duration
	coalesceWindow    time.Duration
	shutdownTimeout   time.Duration
	demo              bool
	console           bool
	corsOrigins       config.StringList
	descriptors       config.StringList
	tlsCert           string
	tlsKey            string
	logLevel          string
	logFormat         string
	debugAddr         string
	security          securityFlags
	broker            brokerFlags

	// The server's limits (registerLimits) and the operations listeners
	// (registerOps).
	bodyReadTimeout      time.Duration
	idleTimeout          time.Duration
	maxBodyMemory        int64
	typeURLPrefixes      config.StringList
	maxSubscribesPerConn int
	metricsAddr          string
	publicMetrics        bool
	admin                adminFlags
	debugAddrPublic      bool
	schemaPush           schemaPushFlags
}

// schemaPushFlags are the limits of schema pushes (schema.Options).
type schemaPushFlags struct {
	maxPushBytes, maxPushTypes     int
	maxPushedTypes, maxPushedBytes int
	perMinute                      int
}

func (s *schemaPushFlags) register(fs *pflag.FlagSet) {
	fs.IntVar(&s.maxPushBytes, "max-schema-push-bytes", schema.DefaultMaxPushBytes, "largest descriptor set one schema push may hold, in bytes (over it: INVALID_ARGUMENT / 400); gRPC messages are also bounded by --max-event-bytes + 64 KiB")
	fs.IntVar(&s.maxPushTypes, "max-schema-push-types", schema.DefaultMaxPushTypes, "message types one schema push may hold (over it: INVALID_ARGUMENT / 400)")
	fs.IntVar(&s.maxPushedTypes, "max-pushed-types", schema.DefaultMaxPushedTypes, "message types all pushed schemas together may hold; a push that would go over it is refused with RESOURCE_EXHAUSTED / 429")
	fs.IntVar(&s.maxPushedBytes, "max-pushed-schema-bytes", schema.DefaultMaxPushedBytes, "bytes all pushed schema files together may take; a push that would go over it is refused with RESOURCE_EXHAUSTED / 429")
	fs.IntVar(&s.perMinute, "schema-pushes-per-minute", schema.DefaultPushesPerMinute, "schema pushes one caller (a token's sub) may make per minute, in bursts of as many (over it: RESOURCE_EXHAUSTED / 429 with Retry-After)")
}

func (s *schemaPushFlags) validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{
		{"max-schema-push-bytes", s.maxPushBytes}, {"max-schema-push-types", s.maxPushTypes},
		{"max-pushed-types", s.maxPushedTypes}, {"max-pushed-schema-bytes", s.maxPushedBytes},
		{"schema-pushes-per-minute", s.perMinute},
	} {
		if f.v <= 0 {
			return fmt.Errorf("serve: --%s must be positive, got %d", f.name, f.v)
		}
	}
	return nil
}

func (s *schemaPushFlags) apply(o *schema.Options) {
	o.MaxPushBytes, o.MaxPushTypes = s.maxPushBytes, s.maxPushTypes
	o.MaxPushedTypes, o.MaxPushedBytes = s.maxPushedTypes, s.maxPushedBytes
	o.PushesPerMinute = s.perMinute
}

func newServeCmd() *cobra.Command {
	c := new(serveConfig)
	cmd := &cobra.Command{
		Use:   "serve [flags]",
		Short: "Run a Herald node (HTTP :8080, gRPC :9090)",
		Long:  serveSynopsis,
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c.settle()
			if err := c.Validate(); err != nil {
				return asUsage(err)
			}
			return c.serve(cmd.Context(), cmd.ErrOrStderr())
		},
	}
	c.register(cmd.Flags())
	markSettings(cmd)
	return cmd
}

// serve wires the node from validated settings and runs it until ctx ends.
func (c *serveConfig) serve(ctx context.Context, stderr io.Writer) error {
	n, err := c.wire(ctx, stderr)
	if errors.Is(err, errStoppedWaiting) {
		return nil
	}
	if err != nil {
		return err
	}
	defer n.close()
	return n.run(ctx)
}

// parseServeFlags fills a config from args, the environment and the
// --config file, as herald serve does, for tests of the settings.
func parseServeFlags(args []string, stderr io.Writer) (*serveConfig, error) {
	c := new(serveConfig)
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	c.register(fs)
	if err := config.Parse(fs, args, os.Getenv); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	c.settle()
	return c, nil
}

// settle applies what one setting implies for another.
func (c *serveConfig) settle() {
	c.security.dev = c.security.dev || c.demo
}

// register defines serve's flags.
func (c *serveConfig) register(fs *pflag.FlagSet) {
	fs.StringVar(&c.configFile, config.FileFlag, "", "YAML `file` of settings: keys are these flag names, e.g. http-addr: \":8080\"")
	fs.StringVar(&c.httpAddr, "http-addr", ":8080", "address for HTTP: SSE, REST, OpenAPI, health, metrics, the console and, with --demo, the demo page")
	fs.StringVar(&c.grpcAddr, "grpc-addr", ":9090", "address for gRPC: herald.v1.PublisherService, herald.v1.SubscriberService, herald.v1.SchemaService, herald.v1.AdminService, grpc.health.v1.Health and server reflection")
	fs.IntVar(&c.maxEventBytes, "max-event-bytes", bridge.DefaultMaxEventBytes, "largest event accepted, in bytes (payload, topic, type, attributes and idempotency key together)")
	fs.IntVar(&c.retentionEvents, "retention-events", memory.DefaultMaxEvents, "events kept per topic for resuming clients (every --broker)")
	fs.DurationVar(&c.retentionAge, "retention-age", memory.DefaultMaxAge, "how long events are kept for resuming clients (every --broker)")
	fs.DurationVar(&c.idempotencyWindow, "idempotency-window", memory.DefaultIdempotencyWindow, "how long a publish's idempotency_key is remembered (every --broker; NATS caps it at --retention-age)")
	fs.DurationVar(&c.heartbeat, "heartbeat", bridge.DefaultHeartbeatInterval, "interval of the comment line sent on idle SSE streams, so proxies keep them open")
	fs.DurationVar(&c.retry, "retry", bridge.DefaultRetryInterval, "reconnect delay suggested to SSE clients (the retry: field)")
	fs.IntVar(&c.queueSize, "queue-size", bridge.DefaultQueueSize, "events that may wait for one SSE client before it is disconnected as too slow (it then resumes with Last-Event-ID)")
	fs.DurationVar(&c.writeTimeout, "write-timeout", bridge.DefaultWriteTimeout, "how long a write to one SSE client may block before its stream is closed (every write gets at least this; a stalled one is cut within 9/8 of it)")
	fs.DurationVar(&c.coalesceWindow, "coalesce-window", bridge.DefaultCoalesceWindow, "least time between two writes to an SSE stream when events come faster than that: the events that come within it go out together in one write, so a busy topic costs less CPU, for at most this much more latency (0: write every event at once)")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 10*time.Second, "longest a graceful shutdown may take before open connections are cut")
	fs.Var(&c.corsOrigins, "cors-origins", "origin of a page on another site allowed to subscribe and publish, e.g. https://app.example.com (such pages may send cookies); may repeat; \"*\" allows any origin, without credentials")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "PEM certificate (chain) file: serve HTTPS with HTTP/2 on --http-addr instead of plain HTTP and h2c; needs --tls-key")
	fs.StringVar(&c.tlsKey, "tls-key", "", "PEM private key file for --tls-cert")
	fs.Var(&c.descriptors, "descriptors", "descriptor set file (buf build -o x.binpb, or protoc --include_imports --descriptor_set_out), or a directory of them, whose message types may be published; reloaded on SIGHUP and when the files change; may repeat")
	fs.BoolVar(&c.demo, "demo", false, "publish a continuous stream of example events (orders, monitoring, chat) to show on the page at /, and know their schemas (orders.v1, monitoring.v1, chat.v1) as builtin types; implies --dev")
	fs.BoolVar(&c.console, "console", true, "serve the operator console at /console (docs/console.md): a static page whose data comes from the admin API, which takes an admin token unless --dev")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.debugAddr, "debug-addr", "", "address for a separate debug listener serving Go profiles at /debug/pprof/ and metrics at /metrics (e.g. 127.0.0.1:6060); off when empty; loopback addresses only, unless --debug-addr-public")
	c.registerLimits(fs)
	c.registerOps(fs)
	c.security.register(fs)
	c.broker.register(fs)
	c.schemaPush.register(fs)
	c.admin.register(fs)
}

// Validate checks the settings without touching files or the network. Its
// messages name the flags.
func (c *serveConfig) Validate() error {
	if _, err := logLevel(c.logLevel); err != nil {
		return err
	}
	if err := c.admin.validate(); err != nil {
		return err
	}
	if _, err := logHandler(c.logFormat); err != nil {
		return err
	}
	if c.maxEventBytes <= 0 || c.retentionEvents <= 0 || c.queueSize <= 0 {
		return fmt.Errorf("serve: --max-event-bytes, --retention-events and --queue-size must be positive")
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{
		{"retention-age", c.retentionAge}, {"idempotency-window", c.idempotencyWindow}, {"heartbeat", c.heartbeat},
		{"retry", c.retry}, {"write-timeout", c.writeTimeout}, {"shutdown-timeout", c.shutdownTimeout},
	} {
		if d.v <= 0 {
			return fmt.Errorf("serve: --%s must be positive, got %v", d.flag, d.v)
		}
	}
	if c.coalesceWindow < 0 || c.coalesceWindow > time.Second {
		return fmt.Errorf("serve: --coalesce-window must be between 0 and 1s, got %v", c.coalesceWindow)
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return fmt.Errorf("serve: --tls-cert and --tls-key go together")
	}
	if err := c.broker.validate(); err != nil {
		return err
	}
	if err := c.schemaPush.validate(); err != nil {
		return err
	}
	if err := c.validateLimits(); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if err := c.validateOps(); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if err := c.security.validate(c.listenAddrs()...); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// registerLimits defines the flags of the server's limits.
func (c *serveConfig) registerLimits(fs *pflag.FlagSet) {
	fs.DurationVar(&c.bodyReadTimeout, "body-read-timeout", bridge.DefaultBodyReadTimeout, "longest a REST request's body may take to arrive whole; a slower one is refused (400), so that clients trickling bytes cannot hold connections and memory")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", bridge.DefaultIdleTimeout, "how long an idle keep-alive HTTP connection stays open, so that idle clients cannot pile up open connections")
	fs.Int64Var(&c.maxBodyMemory, "max-body-memory", bridge.DefaultMaxBodyMemory, "bytes that the REST request bodies being read or processed may hold in memory, all requests together (64 MiB by default); a request that finds them used up gets 429, so that many large requests at once cannot exhaust memory")
	fs.Var(&c.typeURLPrefixes, "type-url-prefixes", "prefix, ending with a slash, of the payload type URLs (google.protobuf.Any, nested ones too) accepted from publishers; others are refused, so that a publisher cannot put text of its own into the @type that browsers see; may repeat")
	// The list starts empty, so that the first --type-url-prefixes replaces
	// the default rather than adding to it; the server takes an empty list
	// for the default.
	fs.Lookup("type-url-prefixes").DefValue = bridge.DefaultTypeURLPrefix
	fs.IntVar(&c.maxSubscribesPerConn, "max-subscribes-per-conn", bridge.DefaultMaxSubscribesPerConn, "concurrent gRPC Subscribe streams on one connection; over it: RESOURCE_EXHAUSTED, so that one client cannot open unbounded streams over a single HTTP/2 connection")
}

// validateLimits checks the flags of registerLimits.
func (c *serveConfig) validateLimits() error {
	if c.bodyReadTimeout <= 0 || c.idleTimeout <= 0 {
		return fmt.Errorf("--body-read-timeout and --idle-timeout must be positive, got %v and %v", c.bodyReadTimeout, c.idleTimeout)
	}
	if c.maxBodyMemory <= 0 || c.maxSubscribesPerConn <= 0 {
		return fmt.Errorf("--max-body-memory and --max-subscribes-per-conn must be positive, got %d and %d", c.maxBodyMemory, c.maxSubscribesPerConn)
	}
	for _, p := range c.typeURLPrefixes {
		if len(p) < 2 || !strings.HasSuffix(p, "/") || strings.ContainsAny(p, " \t\r\n") {
			return fmt.Errorf("--type-url-prefixes %q: want a prefix ending with a slash, like %s", p, bridge.DefaultTypeURLPrefix)
		}
	}
	return nil
}

// node is a wired Herald node: its broker, registry and server, and the
// listeners it will serve. close releases them; run serves until its
// context ends.
type node struct {
	c       *serveConfig
	log     *slog.Logger
	broker  backend
	types   *schema.Registry
	srv     *bridge.Server
	httpLn  net.Listener
	grpcLn  net.Listener
	tls     bool
	metrics *sideListener            // --metrics-addr, or nil
	debug   *sideListener            // --debug-addr, or nil
	tracing *sdktrace.TracerProvider // OTEL_TRACES_EXPORTER=otlp, or nil
	standby *standby                 // serving httpLn and grpcLn until the broker connects, or nil
}

// wire builds the node from validated settings: it reads the key files,
// opens the listeners, connects to the broker (a networked one with a
// standby serving health checks until it answers) and reads the schemas.
// ctx bounds the broker, the schema watch and the JWKS refreshes, so it
// must live as long as the node; ending it while the broker is awaited
// makes wire return errStoppedWaiting.
func (c *serveConfig) wire(ctx context.Context, stderr io.Writer) (_ *node, err error) {
	log, err := newLogger(stderr, c.logLevel, c.logFormat)
	if err != nil {
		return nil, err
	}
	// Tracing is configured by the standard OTEL_* variables only.
	tp, err := tracing.FromEnv(ctx, buildVersion().module, log)
	if err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	if tp != nil {
		log = slog.New(tracing.LogHandler(log.Handler()))
	}
	n := &node{c: c, log: log, tracing: tp}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	var tlsConfig *tls.Config
	if c.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("serve: --tls-cert/--tls-key: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	n.tls = tlsConfig != nil

	cfg := bridge.Config{
		Logger:            log,
		MaxEventBytes:     c.maxEventBytes,
		HeartbeatInterval: c.heartbeat,
		RetryInterval:     c.retry,
		QueueSize:         c.queueSize,
		WriteTimeout:      c.writeTimeout,
		CoalesceWindow:    cmp.Or(c.coalesceWindow, -1),
		CORSOrigins:       c.corsOrigins,
		TLS:               tlsConfig,
	}
	cfg.Pages = map[string]http.Handler{}
	if c.demo {
		maps.Copy(cfg.Pages, web.Pages())
	}
	if c.console {
		maps.Copy(cfg.Pages, console.Pages())
	}
	if tp != nil {
		cfg.TracerProvider = tp
	}
	cfg.BodyReadTimeout, cfg.IdleTimeout, cfg.MaxBodyMemory = c.bodyReadTimeout, c.idleTimeout, c.maxBodyMemory
	cfg.TypeURLPrefixes, cfg.MaxSubscribesPerConn = c.typeURLPrefixes, c.maxSubscribesPerConn
	cfg.PrivateMetrics = !c.publicMetrics
	c.admin.apply(&cfg)
	httpAddr, grpcAddr, metricsAddr, debugAddr := c.httpAddr, c.grpcAddr, c.metricsAddr, c.debugAddr
	addrs := []*string{&httpAddr, &grpcAddr}
	for _, a := range []*string{&metricsAddr, &debugAddr} {
		if *a != "" {
			addrs = append(addrs, a)
		}
	}
	if err := c.security.apply(ctx, &cfg, addrs, log); err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	// The listeners open before the broker connects: a networked broker
	// may come up after the node (a rollout that starts both), and the
	// node answers health checks while it waits.
	if n.httpLn, err = net.Listen("tcp", httpAddr); err != nil {
		return nil, fmt.Errorf("listening for HTTP: %w", err)
	}
	if n.grpcLn, err = net.Listen("tcp", grpcAddr); err != nil {
		return nil, fmt.Errorf("listening for gRPC: %w", err)
	}
	if n.metrics, err = listenSide("metrics-addr", metricsAddr); err != nil {
		return nil, err
	}
	if n.debug, err = listenSide("debug-addr", debugAddr); err != nil {
		return nil, err
	}
	if c.broker.kind != "memory" {
		n.standby = startStandby(n.httpLn, n.grpcLn, tlsConfig, cfg.GRPCTLS, c.broker.kind)
		log.Info("herald waiting for the broker", "http", n.httpLn.Addr().String(), "grpc", n.grpcLn.Addr().String(),
			"broker", c.broker.kind, "start_timeout", c.broker.startTimeout)
	}
	if n.broker, err = c.connectBroker(ctx, log); err != nil {
		return nil, err
	}
	typeOpts := schema.Options{Store: n.broker, Descriptors: c.descriptors, Logger: log}
	c.schemaPush.apply(&typeOpts)
	if c.demo {
		typeOpts.Compiled = demo.Files()
	}
	if n.types, err = schema.New(ctx, typeOpts); err != nil {
		return nil, err
	}
	cfg.Broker, cfg.Types, cfg.Schemas = n.broker, n.types, schema.NewService(n.types)
	if n.srv, err = bridge.New(cfg); err != nil {
		return nil, err
	}
	if n.standby != nil {
		n.httpLn, n.grpcLn = n.standby.stop()
		n.standby = nil
	}
	return n, nil
}

// close releases what wire acquired. Listeners that Serve took over are
// already closed by then; closing them again is harmless.
func (n *node) close() {
	if n.standby != nil {
		n.standby.stop()
	}
	if n.httpLn != nil {
		n.httpLn.Close()
	}
	if n.grpcLn != nil {
		n.grpcLn.Close()
	}
	n.metrics.close()
	n.debug.close()
	if n.broker != nil {
		n.broker.Close()
	}
	if n.tracing != nil {
		// Export the spans still buffered, as long as a shutdown may take.
		ctx, cancel := context.WithTimeout(context.Background(), n.c.shutdownTimeout)
		defer cancel()
		if err := n.tracing.Shutdown(ctx); err != nil {
			n.log.Warn("tracing: exporting the last spans failed", "err", err)
		}
	}
}

// run serves until ctx ends or serving fails, then shuts down within
// --shutdown-timeout.
func (n *node) run(ctx context.Context) error {
	c, log := n.c, n.log
	go n.types.Watch(ctx, 2*time.Second)
	reloadOnHangup(ctx, n.types, log)
	errc := make(chan error, 1)
	go func() { errc <- n.srv.Serve(n.httpLn, n.grpcLn) }()
	scheme := "http"
	if n.tls {
		scheme = "https"
	}
	metrics := n.srv.MetricsHandler()
	n.metrics.serve(metricsMux(metrics))
	n.debug.serve(debugMux(metrics))
	listening := []any{"http", n.httpLn.Addr().String(), "grpc", n.grpcLn.Addr().String(), "tls", n.tls, "broker", c.broker.kind, "epoch", n.broker.Epoch(), "demo", c.demo}
	if n.metrics != nil {
		listening = append(listening, "metrics", n.metrics.addr())
	}
	if n.debug != nil {
		// Its own line too, before: herald-bench reads the debug address
		// from it.
		log.Info("debug listening", "addr", n.debug.addr())
		listening = append(listening, "debug", n.debug.addr())
	}
	log.Info("herald listening", listening...)
	if c.demo {
		go demo.Run(ctx, n.srv.Publisher(), log)
		log.Info("demo events on: open the page", "url", scheme+"://"+browsable(n.httpLn.Addr())+"/")
	}
	if c.console {
		log.Info("operator console", "url", scheme+"://"+browsable(n.httpLn.Addr())+"/console")
	}

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", c.shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), c.shutdownTimeout)
	defer cancel()
	err := n.srv.Shutdown(sctx)
	if serveErr := <-errc; err == nil {
		err = serveErr
	}
	if err == nil {
		log.Info("stopped")
	}
	return err
}

// browsable turns a listening address into one a browser can open.
func browsable(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	l, err := logLevel(level)
	if err != nil {
		return nil, err
	}
	h, err := logHandler(format)
	if err != nil {
		return nil, err
	}
	return slog.New(h(w, &slog.HandlerOptions{Level: l})), nil
}

func logLevel(level string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return l, fmt.Errorf("--log-level: %w", err)
	}
	return l, nil
}

func logHandler(format string) (func(io.Writer, *slog.HandlerOptions) slog.Handler, error) {
	switch strings.ToLower(format) {
	case "text":
		return func(w io.Writer, o *slog.HandlerOptions) slog.Handler { return slog.NewTextHandler(w, o) }, nil
	case "json":
		return func(w io.Writer, o *slog.HandlerOptions) slog.Handler { return slog.NewJSONHandler(w, o) }, nil
	}
	return nil, fmt.Errorf("--log-format: want text or json, got %q", format)
}

// reloadOnHangup reloads the descriptor files on SIGHUP until ctx ends. It
// takes SIGHUP over before it returns, so that a SIGHUP sent once the node
// logs that it listens reloads rather than kills it.
func reloadOnHangup(ctx context.Context, types *schema.Registry, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := types.Reload(ctx); err != nil {
					log.Error("SIGHUP: schemas not reloaded; the previous types stay in use", "err", err)
					continue
				}
				log.Info("SIGHUP: schemas reloaded", "types", len(types.Names()))
			}
		}
	}()
}
