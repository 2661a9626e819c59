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
		NoLog:      true,
		NoSigs:     true,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return err
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return fmt.Errorf("not ready within 10s")
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

// Cluster is three embedded NATS servers routed to one another, with
// JetStream clustered over them, for streams of three replicas.
type Cluster struct {
	Servers []*server.Server
}

// StartCluster starts a cluster of n servers that is shut down when tb
// ends, once its JetStream's meta leader counts all n online, so that a
// stream of n replicas can be placed.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	var routes []*url.URL
	for _, p := range ports {
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	c := &Cluster{}
	for i := range n {
		srv, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("herald-test-%d", i),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   tb.TempDir(),
			MaxPayload: MaxPayload,
			NoLog:      true,
			NoSigs:     true,
			Cluster:    server.ClusterOpts{Name: "herald-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:     routes,
		})
		if err != nil {
			tb.Fatal(err)
		}
		srv.Start()
		tb.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
		c.Servers = append(c.Servers, srv)
	}
	for _, srv := range c.Servers {
		if !srv.ReadyForConnections(10 * time.Second) {
			tb.Fatal("a clustered NATS server is not ready within 10s")
		}
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

// URLs are the servers' client URLs, comma-separated.
func (c *Cluster) URLs() string {
	var urls []string
	for _, srv := range c.Servers {
		urls = append(urls, srv.ClientURL())
	}
	return strings.Join(urls, ",")
}
