package bridge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/cors"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoregistry"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/apidoc"
	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/broker"
)

// Defaults for Config.
const (
	maxTopicsPerSubscription = 64

	DefaultMaxEventBytes        = 1 << 20
	DefaultHeartbeatInterval    = 15 * time.Second
	DefaultRetryInterval        = 2 * time.Second
	DefaultQueueSize            = 256
	DefaultWriteTimeout         = 10 * time.Second
	DefaultCoalesceWindow       = 2 * time.Millisecond
	DefaultBodyReadTimeout      = 10 * time.Second
	DefaultIdleTimeout          = 2 * time.Minute
	DefaultMaxBodyMemory        = 64 << 20
	DefaultMaxSubscribesPerConn = 100

	// grpcStreamWindow and grpcConnWindow are the gRPC listener's
	// flow-control windows: bytes a publisher may have in flight on
	// one stream and on one connection before Herald has taken them.
	grpcStreamWindow = 1 << 20
	grpcConnWindow   = 4 << 20

	// maxHeaderBytes bounds a request's line and headers: room for 64
	// topics, a token and the usual headers, and no more.
	maxHeaderBytes = 64 << 10
)

// Config configures a Server. Zero values mean the defaults.
type Config struct {
	// Broker is the event log; required. The Server does not close it.
	Broker broker.Broker
	// Types resolves payload types; required. When it is also a
	// PayloadValidator, payloads are checked against their constraints;
	// when it is a MessageRanger, subscriptions' field paths are checked.
	Types TypeResolver
	// Schemas, when set, serves herald.v1.SchemaService over gRPC and
	// REST (/v1/schemas).
	Schemas heraldv1.SchemaServiceServer
	// Logger receives the server's logs (default: slog.Default()).
	Logger *slog.Logger
	// TracerProvider, when set, traces publishes and deliveries
	// (trace.go); nil: tracing is off and costs nothing.
	TracerProvider trace.TracerProvider
	// MaxEventBytes limits an event's size: payload, topic, type,
	// attributes and idempotency key together (default 1 MiB).
	MaxEventBytes int
	// HeartbeatInterval is how often an idle SSE stream gets a comment
	// line (default 15s).
	HeartbeatInterval time.Duration
	// RetryInterval is the reconnect delay suggested to SSE clients with
	// "retry:" (default 2s).
	RetryInterval time.Duration
	// QueueSize is how many events may wait for one SSE subscriber before
	// it is disconnected as too slow (default 256).
	QueueSize int
	// WriteTimeout bounds each write to an SSE stream (default 10s): every
	// write gets at least this long, and a stalled one is cut within 9/8 of
	// it (the deadline is re-armed only every eighth of it).
	WriteTimeout time.Duration
	// CoalesceWindow is the least time between two passes of one of the
	// hub's shards over its streams (default 2ms; negative: none). A shard
	// that events reach more often than that holds the next pass until the
	// window has passed, and writes each stream what came meanwhile with
	// one write: a busy topic's subscribers then cost one write(2) per
	// window instead of one per event, for at most this much latency. A
	// shard that events reach less often writes each at once.
	CoalesceWindow time.Duration
	// Auth authenticates publishers and subscribers. nil allows everyone
	// everything: for tests and embedding only (herald serve always sets
	// one, open only with --dev).
	Auth auth.Authenticator
	// AuthCookie is the cookie a subscriber's token may come in (default
	// "herald_token").
	AuthCookie string
	// AllowQueryToken lets subscribers pass their token as the
	// access_token query parameter (URLs end up in logs: see the docs).
	AllowQueryToken bool
	// PublishRate limits the events per second one credential may
	// publish (0: no limit), with bursts of PublishBurst (default: the
	// rate, at least 1).
	PublishRate  float64
	PublishBurst int
	// MaxConnections and MaxConnectionsPerIP bound concurrent streams, SSE
	// and gRPC Subscribe alike, in total and per client address (0: no
	// limit).
	MaxConnections      int
	MaxConnectionsPerIP int
	// MaxSubscribesPerConn bounds concurrent gRPC Subscribe streams on one
	// connection (default 100).
	MaxSubscribesPerConn int
	// TrustedProxies are the proxies whose X-Forwarded-For names the
	// client address; empty: the connection's address is the client's.
	TrustedProxies []netip.Prefix
	// MaxTopicsPerSubscription bounds the topic parameters of one
	// subscription (default 64).
	MaxTopicsPerSubscription int
	// TypeURLPrefixes are the prefixes of the payload type URLs accepted
	// from publishers (default: DefaultTypeURLPrefix alone); each ends with
	// a slash, and the type's full name follows it.
	TypeURLPrefixes []string
	// MaxSnapshotTopics bounds the topics of one snapshot (snapshot=true);
	// a subscription that would get more is refused (default 10,000).
	MaxSnapshotTopics int
	// BodyReadTimeout bounds reading a REST request's body (default 10s):
	// a body that has not arrived whole by then is refused.
	BodyReadTimeout time.Duration
	// IdleTimeout is how long an idle keep-alive HTTP connection stays
	// open (default 2m).
	IdleTimeout time.Duration
	// MaxBodyMemory bounds the memory held by REST request bodies being
	// read or processed, across all requests (default 64 MiB); a request
	// that finds it used up is refused with 429.
	MaxBodyMemory int64

	// GRPCTLS, when set, serves gRPC over TLS; with ClientCAs, client
	// certificates become Credentials.Certificates.
	GRPCTLS *tls.Config

	// CORSOrigins are the origins of pages on other sites that may
	// subscribe and publish over HTTP, exactly as browsers send them
	// ("https://app.example.com"). Those pages may send credentials
	// (cookies, EventSource withCredentials). The single entry "*" allows
	// any origin, without credentials. Empty: same-origin pages only.
	CORSOrigins []string
	// TLS, when set, serves HTTPS on the HTTP listener, offering HTTP/2
	// and HTTP/1.1 by ALPN. It needs a certificate (Certificates or
	// GetCertificate). HTTP/2 matters to browsers: over HTTP/1.1 they open
	// at most six connections per host, so a seventh EventSource (or tab)
	// stalls; over HTTP/2 every stream shares one connection. Unset: plain
	// HTTP/1.1 and h2c, for running behind a TLS-terminating proxy.
	TLS *tls.Config

	// PrivateMetrics leaves /metrics off the HTTP listener, for a server
	// that serves MetricsHandler on a listener of its own.
	PrivateMetrics bool

	// NodeName names this node among those sharing the broker, in the
	// admin API: 1 to 64 bytes of [a-z0-9-] (default: the host name, made
	// to fit, and a random suffix).
	NodeName string
	// Version is the node's version as the admin API shows it (default:
	// the build's, as GET /v1/openapi.json gives it).
	Version string
	// PresenceInterval is how often the node reports its figures through
	// the broker and reads the revocations (default 2s): the admin API's
	// figures are at most about this old, and a revocation takes at most
	// this long to end the streams of other nodes. A node's report expires
	// after three intervals (at least 1s).
	PresenceInterval time.Duration
	// MetricTopics is how many topics, the busiest of this node, get
	// per-topic Prometheus metrics (herald_topic_subscribers,
	// herald_topic_publish_rate); the rest are added up under
	// topic="other". Default 20; negative: no per-topic metrics.
	MetricTopics int

	// Pages are further routes of the HTTP listener, by net/http pattern
	// ("GET /{$}" → the demo page): cmd/herald mounts the demo page here
	// with --demo. They may not take the API's routes.
	Pages map[string]http.Handler
}

// Validate reports the first invalid field, by name.
func (c Config) Validate() error {
	switch {
	case c.Broker == nil:
		return errors.New("bridge: Config.Broker is required")
	case c.Types == nil:
		return errors.New("bridge: Config.Types is required")
	case c.MaxEventBytes < 0:
		return errors.New("bridge: Config.MaxEventBytes must not be negative")
	case c.HeartbeatInterval < 0, c.RetryInterval < 0, c.WriteTimeout < 0, c.BodyReadTimeout < 0, c.IdleTimeout < 0, c.PresenceInterval < 0:
		return errors.New("bridge: Config durations must not be negative")
	case c.QueueSize < 0:
		return errors.New("bridge: Config.QueueSize must not be negative")
	case c.PublishRate < 0, c.PublishBurst < 0, c.MaxConnections < 0, c.MaxConnectionsPerIP < 0, c.MaxTopicsPerSubscription < 0, c.MaxBodyMemory < 0, c.MaxSubscribesPerConn < 0, c.MaxSnapshotTopics < 0:
		return errors.New("bridge: Config limits must not be negative")
	}
	if c.NodeName != "" {
		if err := broker.ValidNode(c.NodeName); err != nil {
			return fmt.Errorf("bridge: Config.NodeName: %v", err)
		}
	}
	if c.TLS != nil && len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil && c.TLS.GetConfigForClient == nil {
		return errors.New("bridge: Config.TLS has no certificate: set Certificates or GetCertificate")
	}
	for _, p := range c.TypeURLPrefixes {
		if !strings.HasSuffix(p, "/") || strings.ContainsAny(p, " \t\r\n") {
			return fmt.Errorf("bridge: Config.TypeURLPrefixes: %q must end with a slash, like %s", p, DefaultTypeURLPrefix)
		}
	}
	for _, o := range c.CORSOrigins {
		if o == "*" && len(c.CORSOrigins) > 1 {
			return errors.New(`bridge: Config.CORSOrigins: "*" cannot be combined with other origins`)
		}
		if o != "*" {
			u, err := url.Parse(o)
			if err != nil || u.Scheme == "" || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
				return fmt.Errorf("bridge: Config.CORSOrigins: %q is not an origin like https://app.example.com", o)
			}
		}
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxEventBytes == 0 {
		c.MaxEventBytes = DefaultMaxEventBytes
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = DefaultRetryInterval
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.CoalesceWindow == 0 {
		c.CoalesceWindow = DefaultCoalesceWindow
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.AuthCookie == "" {
		c.AuthCookie = "herald_token"
	}
	if c.MaxTopicsPerSubscription == 0 {
		c.MaxTopicsPerSubscription = maxTopicsPerSubscription
	}
	if len(c.TypeURLPrefixes) == 0 {
		c.TypeURLPrefixes = []string{DefaultTypeURLPrefix}
	}
	if c.BodyReadTimeout == 0 {
		c.BodyReadTimeout = DefaultBodyReadTimeout
	}
	if c.MaxSnapshotTopics == 0 {
		c.MaxSnapshotTopics = DefaultMaxSnapshotTopics
	}
	if c.MaxSubscribesPerConn == 0 {
		c.MaxSubscribesPerConn = DefaultMaxSubscribesPerConn
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxBodyMemory == 0 {
		c.MaxBodyMemory = DefaultMaxBodyMemory
	}
	if c.NodeName == "" {
		c.NodeName = defaultNodeName()
	}
	if c.Version == "" {
		c.Version = apidoc.Version()
	}
	if c.PresenceInterval == 0 {
		c.PresenceInterval = DefaultPresenceInterval
	}
	if c.MetricTopics == 0 {
		c.MetricTopics = DefaultMetricTopics
	}
}

// Server is one Herald node: the gRPC API, the HTTP API (SSE, REST,
// OpenAPI, health, metrics, any Pages) and the hub between them and the
// broker.
type Server struct {
	cfg      Config
	log      *slog.Logger
	metrics  *metrics
	hub      *Hub
	streams  *streamHandler
	pub      *publisher
	schemas  *schemaService // nil: no SchemaService
	admin    *adminService
	presence *presence
	// presenceMu orders Serve's start of the presence reporter with
	// Shutdown's stop of it; it guards the three fields after it.
	presenceMu      sync.Mutex
	presenceStop    context.CancelFunc // set once the reporter runs
	presenceDone    chan struct{}      // closed when it returned
	presenceStopped bool
	conns           *connLimiter // streams, SSE and gRPC Subscribe
	grpc            *grpc.Server
	health          *health.Server
	http            *http.Server
	ready           atomic.Bool
	draining        chan struct{}

	shutdownOnce sync.Once
	shutdownErr  error
}

// New returns a Server for cfg. It validates cfg and does no I/O.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		metrics:  newMetrics(),
		draining: make(chan struct{}),
	}
	s.metrics.watchBroker(cfg.Broker)
	s.hub = newHub(cfg.Broker, cfg.Types, s.log, s.metrics, cfg.QueueSize)
	s.hub.coalesce = cfg.CoalesceWindow
	s.presence = newPresence(cfg.NodeName, cfg.Version, cfg.PresenceInterval, s.hub, cfg.Broker, s.log)
	if cfg.Auth != nil {
		// Every path authenticates through this: a revoked subject's
		// tokens are refused everywhere.
		cfg.Auth = revokingAuth{inner: cfg.Auth, p: s.presence}
		s.cfg.Auth = cfg.Auth
	}
	if cfg.MetricTopics > 0 {
		s.metrics.registry.MustRegister(&topicCollector{p: s.presence, n: cfg.MetricTopics})
	}
	if cfg.Schemas != nil {
		s.schemas = &schemaService{inner: cfg.Schemas, auth: cfg.Auth}
	}
	s.admin = &adminService{auth: cfg.Auth, hub: s.hub, presence: s.presence, broker: cfg.Broker}
	s.metrics.watchServer(s.ready.Load, cfg.Broker, cfg.MaxConnections)
	s.pub = &publisher{
		broker:        cfg.Broker,
		types:         cfg.Types,
		typeURLs:      typeURLResolver{TypeResolver: cfg.Types, prefixes: cfg.TypeURLPrefixes},
		metrics:       s.metrics,
		epoch:         cfg.Broker.Epoch(),
		maxEventBytes: cfg.MaxEventBytes,
		draining:      s.draining,
		auth:          cfg.Auth,
		limiter:       newPublishLimiter(cfg.PublishRate, cfg.PublishBurst),
		presence:      s.presence,
		tracer:        newTracer(cfg.TracerProvider),
		log:           s.log,
	}
	s.hub.tracer = s.pub.tracer

	grpcOpts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(cfg.MaxEventBytes + 64<<10),
		// Fixed flow-control windows. With grpc-go's default dynamic
		// window, every data frame that arrives after the last
		// bandwidth probe was answered starts another probe: a
		// WINDOW_UPDATE and a PING written, and the PING's answer
		// read back. A publisher sending one small event at a time
		// pays that on every publish. A fixed window of 1 MiB per
		// stream is what Go's own HTTP/2 server grants.
		grpc.StaticStreamWindowSize(grpcStreamWindow),
		grpc.StaticConnWindowSize(grpcConnWindow),
	}
	if cfg.GRPCTLS != nil {
		grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(cfg.GRPCTLS)))
	}
	s.grpc = grpc.NewServer(grpcOpts...)
	heraldv1.RegisterPublisherServiceServer(s.grpc, s.pub)
	s.conns = &connLimiter{
		total:   cfg.MaxConnections,
		perIP:   cfg.MaxConnectionsPerIP,
		perConn: cfg.MaxSubscribesPerConn,
		trusted: cfg.TrustedProxies,
		perIPs:  make(map[netip.Addr]int),
	}
	heraldv1.RegisterSubscriberServiceServer(s.grpc, &subscriberService{hub: s.hub, auth: cfg.Auth, maxTopics: cfg.MaxTopicsPerSubscription, conns: s.conns, maxSnapshotTopics: cfg.MaxSnapshotTopics})
	if s.schemas != nil {
		heraldv1.RegisterSchemaServiceServer(s.grpc, s.schemas)
	}
	heraldv1.RegisterAdminServiceServer(s.grpc, s.admin)
	s.health = health.NewServer()
	s.setServing(healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	registerReflection(s.grpc, cfg.Types)

	handler, err := s.routes()
	if err != nil {
		return nil, err
	}
	s.http = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
		IdleTimeout:       cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		Protocols:         new(http.Protocols),
	}
	// HTTP/1.1, and HTTP/2 without TLS (h2c) for running behind a
	// TLS-terminating proxy; with TLS, HTTP/2 by ALPN.
	s.http.Protocols.SetHTTP1(true)
	s.http.Protocols.SetUnencryptedHTTP2(true)
	if cfg.TLS != nil {
		s.http.Protocols.SetHTTP2(true)
		s.http.TLSConfig = cfg.TLS.Clone()
		if s.http.TLSConfig.MinVersion == 0 {
			s.http.TLSConfig.MinVersion = tls.VersionTLS12
		}
	}
	return s, nil
}

// Publisher returns the server's PublisherService implementation, for
// in-process publishers such as the demo.
func (s *Server) Publisher() heraldv1.PublisherServiceServer { return s.pub }

// MetricsHandler serves the server's Prometheus metrics.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{})
}

// Handler returns the HTTP handler (SSE, REST, OpenAPI, health, metrics).
func (s *Server) Handler() http.Handler { return s.http.Handler }

type restKey struct{}

func isGateway(ctx context.Context) bool { return ctx.Value(restKey{}) != nil }

func (s *Server) routes() (http.Handler, error) {
	jsonpb := &runtime.JSONPb{
		// Responses hold no payloads; only error details (Any) need
		// resolving, and those types are linked in.
		MarshalOptions: protojson.MarshalOptions{Resolver: protoregistry.GlobalTypes},
		// The nesting bound keeps decoding linear in the body's size
		// (each google.protobuf.Any level rescans what it holds).
		UnmarshalOptions: protojson.UnmarshalOptions{Resolver: requestResolver{s.pub.typeURLs}, RecursionLimit: maxPayloadDepth},
	}
	gw := runtime.NewServeMux(
		runtime.WithOutgoingHeaderMatcher(func(key string) (string, bool) {
			if key == "retry-after" {
				return "Retry-After", true
			}
			return runtime.MetadataHeaderPrefix + key, true
		}),
		runtime.WithMarshalerOption(runtime.MIMEWildcard, jsonpb),
		runtime.WithErrorHandler(restErrorHandler),
	)
	if err := heraldv1.RegisterPublisherServiceHandlerServer(context.Background(), gw, s.pub); err != nil {
		return nil, fmt.Errorf("bridge: registering REST routes: %w", err)
	}
	if s.schemas != nil {
		if err := heraldv1.RegisterSchemaServiceHandlerServer(context.Background(), gw, s.schemas); err != nil {
			return nil, fmt.Errorf("bridge: registering REST routes: %w", err)
		}
	}
	if err := heraldv1.RegisterAdminServiceHandlerServer(context.Background(), gw, s.admin); err != nil {
		return nil, fmt.Errorf("bridge: registering REST routes: %w", err)
	}
	// JSON is bulkier than protobuf (base64 bytes, field names): allow
	// the body some room over the event limit; the limit itself is checked
	// on the decoded event.
	rest := &restFront{
		gw:          gw,
		unmarshal:   jsonpb.UnmarshalOptions,
		pub:         s.pub,
		schemas:     s.schemas,
		admin:       s.admin,
		maxBody:     int64(3*s.cfg.MaxEventBytes + 64<<10),
		bodyTimeout: s.cfg.BodyReadTimeout,
		budget:      &bodyBudget{max: s.cfg.MaxBodyMemory},
	}

	mux := http.NewServeMux()
	s.streams = &streamHandler{
		hub:               s.hub,
		log:               s.log,
		metrics:           s.metrics,
		retry:             s.cfg.RetryInterval,
		writeTimeout:      s.cfg.WriteTimeout,
		auth:              s.cfg.Auth,
		cookie:            s.cfg.AuthCookie,
		queryToken:        s.cfg.AllowQueryToken,
		maxTopics:         s.cfg.MaxTopicsPerSubscription,
		conns:             s.conns,
		maxSnapshotTopics: s.cfg.MaxSnapshotTopics,
		hangups:           hangups{hub: s.hub},
	}
	mux.Handle("GET /v1/events", s.streams)
	mux.HandleFunc("POST /v1/topics/{topic}/events", rest.publish)
	mux.HandleFunc("DELETE /v1/topics/{topic}/state", rest.deleteState)
	mux.HandleFunc("GET /v1/topics", rest.adminRead)
	mux.HandleFunc("GET /v1/topics/{topic}/events", rest.adminRead)
	mux.HandleFunc("GET /v1/nodes", rest.adminRead)
	mux.HandleFunc("GET /v1/revocations", rest.adminRead)
	mux.HandleFunc("POST /v1/revocations", rest.adminWrite)
	if s.schemas != nil {
		mux.HandleFunc("GET /v1/schemas", rest.read)
		mux.HandleFunc("GET /v1/schemas/{name}", rest.read)
		mux.HandleFunc("POST /v1/schemas", rest.registerSchemas)
	}
	mux.Handle("GET /v1/openapi.json", apidoc.Handler())
	if !s.cfg.PrivateMetrics {
		mux.Handle("GET /metrics", s.MetricsHandler())
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	for pattern, h := range s.cfg.Pages {
		if err := handlePage(mux, pattern, h); err != nil {
			return nil, err
		}
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, fmt.Errorf("%w: no route for %s %s", broker.ErrNotFound, r.Method, broker.Printable(r.URL.Path)))
	})
	if len(s.cfg.CORSOrigins) == 0 {
		return mux, nil
	}
	return cors.New(cors.Options{
		AllowedOrigins: s.cfg.CORSOrigins,
		// Credentials only ever with exact origins: browsers refuse "*"
		// with credentials, and echoing any origin would hand every site
		// the user's cookies.
		AllowCredentials: !slices.Contains(s.cfg.CORSOrigins, "*"),
		AllowedMethods:   []string{http.MethodGet, http.MethodPost, http.MethodDelete},
		AllowedHeaders:   []string{"Content-Type", "Authorization", "Last-Event-ID", "Cache-Control"},
		MaxAge:           600,
	}).Handler(mux), nil
}

// handlePage mounts a page, turning net/http's panic on a malformed or
// conflicting pattern into an error.
func handlePage(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bridge: Config.Pages: %v", r)
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !s.ready.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready: not serving or shutting down\n"))
		return
	}
	if hc, ok := s.cfg.Broker.(broker.HealthChecker); ok {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := hc.Healthy(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: broker unavailable\n"))
			return
		}
	}
	_, _ = w.Write([]byte("ready\n"))
}

// setServing sets the gRPC health status of the server and every service
// it registered.
func (s *Server) setServing(st healthpb.HealthCheckResponse_ServingStatus) {
	s.health.SetServingStatus("", st)
	for name := range s.grpc.GetServiceInfo() {
		s.health.SetServingStatus(name, st)
	}
}

// Serve serves HTTP on httpLn (HTTPS when Config.TLS is set) and gRPC on
// grpcLn until Shutdown. It returns nil after a clean shutdown, or the first
// error that stopped a listener.
func (s *Server) Serve(httpLn, grpcLn net.Listener) error {
	if err := s.hub.start(s.cfg.HeartbeatInterval); err != nil {
		httpLn.Close()
		grpcLn.Close()
		if errors.Is(err, broker.ErrClosed) {
			return fmt.Errorf("bridge: Serve after Shutdown: %w", err)
		}
		return fmt.Errorf("subscribing to the broker: %w", err)
	}
	errc := make(chan error, 2)
	go func() {
		var err error
		if s.http.TLSConfig != nil {
			err = s.http.ServeTLS(httpLn, "", "") // certificates come from TLSConfig
		} else {
			err = s.http.Serve(httpLn)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		errc <- err
	}()
	go func() {
		err := s.grpc.Serve(grpcLn)
		if errors.Is(err, grpc.ErrServerStopped) { // Shutdown came first
			err = nil
		}
		errc <- err
	}()
	s.presenceMu.Lock()
	if !s.presenceStopped {
		ctx, stop := context.WithCancel(context.Background())
		s.presenceStop, s.presenceDone = stop, make(chan struct{})
		go func() {
			defer close(s.presenceDone)
			s.presence.run(ctx)
		}()
	}
	s.presenceMu.Unlock()
	s.ready.Store(true)
	s.setServing(healthpb.HealthCheckResponse_SERVING)

	err := <-errc
	if err != nil {
		s.log.Error("listener stopped", "err", err)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	}
	err2 := <-errc
	return errors.Join(err, err2)
}

// Shutdown stops the server within ctx: readiness fails at once, SSE
// streams are told to reconnect and closed, in-flight publishes finish, and
// PublishStream streams end at their next message. At ctx's deadline what
// remains is cut. It is idempotent; later calls return the first result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() {
		s.ready.Store(false)
		s.health.Shutdown()
		close(s.draining)
		s.hub.close()
		s.presenceMu.Lock()
		s.presenceStopped = true
		stop, done := s.presenceStop, s.presenceDone
		s.presenceMu.Unlock()
		if stop != nil {
			stop()
			<-done
		}

		grpcDone := make(chan struct{})
		go func() {
			s.grpc.GracefulStop()
			close(grpcDone)
		}()
		httpErr := s.http.Shutdown(ctx)
		// Streams taken over from net/http (takeover.go) are not its to
		// wait for.
		if err := s.streams.wait(ctx); err != nil && httpErr == nil {
			httpErr = err
		}
		select {
		case <-grpcDone:
		case <-ctx.Done():
			s.grpc.Stop()
			<-grpcDone
		}
		if httpErr != nil {
			_ = s.http.Close()
			s.shutdownErr = fmt.Errorf("shutdown cut short: %w", httpErr)
		}
	})
	return s.shutdownErr
}
