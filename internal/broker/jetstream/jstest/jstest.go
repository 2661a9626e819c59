// Package jstest runs a real NATS server with JetStream inside the test
// process, for the JetStream broker's tests and the cluster tests: file
// storage in a temporary directory, a random port on 127.0.0.1, and a
// Restart that brings the same server back on the same port and store, as
// an operator restarting NATS would.
package jstest

import (
	"fmt"
	"net"
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
