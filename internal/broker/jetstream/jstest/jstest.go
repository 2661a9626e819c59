// Package jstest runs a real NATS server with JetStream inside the test
// process, for the JetStream broker's tests and the cluster tests: file
// storage in a temporary directory, a random port on 127.0.0.1, and a
// Restart that brings the same server back on the same port and store, as
// an operator restarting NATS would.
package jstest

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/heraldhq/herald/internal/poll"
)

// MaxPayload is the servers' max_payload: room for Herald's default 1 MiB
// events and their headers.
const MaxPayload = 8 << 20

// Server is an embedded NATS server with JetStream.
type Server struct {
	tb   testing.TB
	dir  string
	mu   sync.Mutex
	port int
	srv  *server.Server
}

// Start starts a server that is shut down when tb ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{tb: tb, dir: tb.TempDir(), port: -1}
	if err := s.start(); err != nil {
		tb.Fatalf("starting NATS: %v", err)
	}
	tb.Cleanup(s.Shutdown)
	return s
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	opts := &server.Options{
		ServerName: "herald-test",
		Host:       "127.0.0.1",
		Port:       s.port,
		JetStream:  true,
		StoreDir:   s.dir,
		MaxPayload: MaxPayload,
		NoSigs:     true,
	}
	srv, err := run(opts)
	if err != nil {
		return err
	}
	s.srv = srv
	s.port = srv.Addr().(*net.TCPAddr).Port
	return nil
}

// URL is the server's client URL.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("nats://127.0.0.1:%d", s.port)
}

// Shutdown stops the server; its store stays for Restart.
func (s *Server) Shutdown() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// Stop is Shutdown, so that a Server is a brokertest.Server.
func (s *Server) Stop() { s.Shutdown() }

// Restart starts the server again on the same port and store directory.
// The port was released by Shutdown; another process taking it meanwhile
// fails the test.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Shutdown()
	var err error
	// The port may linger briefly after Shutdown.
	if poll.Wait(10*time.Second, "NATS to restart", func() bool { err = s.start(); return err == nil }) != nil {
		s.tb.Fatalf("restarting NATS on port %d: %v", s.port, err)
	}
}

// Cluster is embedded NATS servers routed to one another, with JetStream
// clustered over them.
type Cluster struct {
	Servers []*server.Server
}

// StartCluster starts a cluster of n servers that is shut down when tb
// ends, once its JetStream's meta leader counts all n online, so that a
// stream of n replicas can be placed.
//
// The first server is the others' seed, and routes gossip the rest into a
// full mesh. Only the seed's route port is picked before it listens (a
// clustered JetStream needs a route configured, even to itself); the others
// take ports of their own choosing.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	first, err := startSeed(tb)
	if err != nil {
		tb.Fatal(err)
	}
	c := &Cluster{Servers: []*server.Server{first}}
	seed := []*url.URL{{Scheme: "nats-route", Host: first.ClusterAddr().String()}}
	for i := 1; i < n; i++ {
		srv, err := startClustered(tb, i, -1, seed)
		if err != nil {
			tb.Fatal(err)
		}
		c.Servers = append(c.Servers, srv)
	}
	if err := poll.Wait(30*time.Second, "a JetStream meta leader that sees every server", func() bool {
		for _, srv := range c.Servers {
			if srv.JetStreamIsLeader() && len(srv.JetStreamClusterPeers()) == n {
				return true
			}
		}
		return false
	}); err != nil {
		tb.Fatal(err)
	}
	return c
}

// startSeed starts a cluster's first server, its routes on a port picked
// beforehand and routed to itself. Another test may take the port between
// the pick and the listen, so a seed that does not start is started again
// on another port, up to five times.
func startSeed(tb testing.TB) (*server.Server, error) {
	var err error
	for range 5 {
		port := freePort(tb)
		var srv *server.Server
		srv, err = startClustered(tb, 0, port, []*url.URL{{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", port)}})
		if err == nil {
			return srv, nil
		}
	}
	return nil, err
}

// startClustered starts the i-th server of a cluster that is shut down
// when tb ends, its routes listening on port (-1 for any) and soliciting
// routes.
func startClustered(tb testing.TB, i, port int, routes []*url.URL) (*server.Server, error) {
	srv, err := run(&server.Options{
		ServerName: fmt.Sprintf("herald-test-%d", i),
		Host:       "127.0.0.1",
		Port:       -1,
		JetStream:  true,
		StoreDir:   tb.TempDir(),
		MaxPayload: MaxPayload,
		NoSigs:     true,
		Cluster:    server.ClusterOpts{Name: "herald-test", Host: "127.0.0.1", Port: port},
		Routes:     routes,
	})
	if err != nil {
		return nil, fmt.Errorf("clustered NATS server %d: %w", i, err)
	}
	tb.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv, nil
}

// run starts a server and waits until it takes connections; one that does
// not within 10s is shut down, and the error says what it logged as an
// error or fatal (a port taken, a bad option), which it otherwise would
// not tell.
func run(opts *server.Options) (*server.Server, error) {
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, err
	}
	log := &errorLog{}
	srv.SetLogger(log, false, false)
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("not ready within 10s: %s", log)
	}
	return srv, nil
}

// freePort is a port on 127.0.0.1 that was free a moment ago.
func freePort(tb testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// errorLog keeps what a server logs as an error or fatal, and drops the
// rest.
type errorLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *errorLog) add(level, format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, level+": "+fmt.Sprintf(format, v...))
}

func (l *errorLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) == 0 {
		return "it logged no error"
	}
	return strings.Join(l.lines, "; ")
}

func (l *errorLog) Fatalf(format string, v ...any) { l.add("fatal", format, v...) }
func (l *errorLog) Errorf(format string, v ...any) { l.add("error", format, v...) }
func (*errorLog) Noticef(string, ...any)           {}
func (*errorLog) Warnf(string, ...any)             {}
func (*errorLog) Debugf(string, ...any)            {}
func (*errorLog) Tracef(string, ...any)            {}

// URLs are the servers' client URLs, comma-separated.
func (c *Cluster) URLs() string {
	var urls []string
	for _, srv := range c.Servers {
		urls = append(urls, srv.ClientURL())
	}
	return strings.Join(urls, ",")
}
