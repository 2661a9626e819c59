// Package redistest runs a real redis-server process for the Redis broker's
// tests and the cluster tests: on a free port of 127.0.0.1, with its files in
// a temporary directory, killed when the test ends. On a machine without
// redis-server the tests that need it skip, loudly; with
// HERALD_REQUIRE_REDIS=1 (CI) they fail instead.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/poll"
)

// Options configure a Server.
type Options struct {
	// Durable turns on the append-only file with an fsync per write, so
	// that every write Redis acknowledged survives Kill and Restart.
	Durable bool
}

// Server is a redis-server process.
type Server struct {
	tb   testing.TB
	bin  string
	dir  string
	opts Options
	mu   sync.Mutex
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// Binary returns the path of redis-server, or skips tb (fails it when
// HERALD_REQUIRE_REDIS=1) when there is none.
func Binary(tb testing.TB) string {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err == nil {
		return bin
	}
	msg := "redis-server is not installed (apt-get install redis-server): the Redis broker's tests cannot run"
	if os.Getenv("HERALD_REQUIRE_REDIS") == "1" {
		tb.Fatal(msg + ", and HERALD_REQUIRE_REDIS=1 requires them")
	}
	fmt.Fprintln(os.Stderr, "\n*** SKIPPING REDIS TESTS: "+msg+" ***")
	tb.Skip("SKIPPED: " + msg)
	return ""
}

// Start starts a redis-server that is killed when tb ends.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	s := &Server{tb: tb, bin: Binary(tb), dir: tb.TempDir(), opts: opts}
	tb.Cleanup(s.Kill)
	var err error
	for range 10 {
		if s.port, err = freePort(); err != nil {
			continue
		}
		if err = s.start(); err == nil {
			return s
		}
	}
	tb.Fatalf("starting redis-server: %v", err)
	return nil
}

// freePort returns a port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) start() error {
	args := []string{
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--dir", s.dir,
		"--save", "", "--daemonize", "no", "--logfile", filepath.Join(s.dir, "redis.log"),
		"--appendonly", "no",
	}
	if s.opts.Durable {
		args[len(args)-1] = "yes"
		args = append(args, "--appendfsync", "always")
	}
	cmd := exec.Command(s.bin, args...)
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	exited := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
	// A process with no readiness signal: ping it until it answers or exits.
	if err := poll.Wait(10*time.Second, "PING", func() bool { return exited() || ping(s.port) }); err != nil {
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("redis-server on port %d did not answer PING within 10s", s.port)
	}
	if exited() {
		log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
		return fmt.Errorf("redis-server on port %d exited: %s", s.port, lastLines(string(log), 5))
	}
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	return nil
}

// ping reports whether Redis on port answers PING with PONG (not LOADING).
func ping(port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// URL is the server's redis:// URL.
func (s *Server) URL() string {
	return fmt.Sprintf("redis://127.0.0.1:%d/0", s.port)
}

// Kill kills the server with SIGKILL, as a crash would.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Kill()
		<-done
	}
}

// Stop is Kill, so that a Server is a brokertest.Server whose outages
// are crashes.
func (s *Server) Stop() { s.Kill() }

// Restart kills the server and starts it again on the same port and
// directory; with Options.Durable it comes back with every acknowledged
// write.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Kill()
	var err error
	// The port may linger briefly after the kill.
	if poll.Wait(10*time.Second, "redis-server to restart", func() bool { err = s.start(); return err == nil }) != nil {
		s.tb.Fatalf("restarting redis-server on port %d: %v", s.port, err)
	}
}
