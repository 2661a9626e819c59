package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/broker/jetstream/jstest"
	"github.com/heraldhq/herald/internal/broker/redis/redistest"
	"github.com/heraldhq/herald/internal/poll"
)

// logLine is what the tests read of a `herald serve --log-format json` line.
type logLine struct {
	Msg, Level, HTTP, GRPC, Broker string
}

// startWaiting starts cmd, a `herald serve --log-format json` with a
// networked broker, and waits for its "herald waiting for the broker"
// line. It returns the addresses and the later lines (closed when the
// process's stderr ends).
func startWaiting(t *testing.T, cmd *exec.Cmd) (httpAddr, grpcAddr string, lines <-chan logLine) {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(stderr)
	var before strings.Builder
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Msg != "herald waiting for the broker" {
			before.WriteString(sc.Text() + "\n")
			continue
		}
		ch := make(chan logLine, 1000)
		go func() {
			defer close(ch)
			for sc.Scan() {
				var l logLine
				if json.Unmarshal(sc.Bytes(), &l) == nil {
					ch <- l
				}
			}
		}()
		return l.HTTP, l.GRPC, ch
	}
	t.Fatalf("herald serve exited before waiting for its broker:\n%s", before.String())
	return
}

func getStatus(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func publishStruct(ctx context.Context, conn *grpc.ClientConn) error {
	payload, err := anypb.New(&structpb.Struct{Fields: map[string]*structpb.Value{"n": structpb.NewNumberValue(1)}})
	if err != nil {
		return err
	}
	_, err = heraldv1.NewPublisherServiceClient(conn).Publish(ctx, &heraldv1.PublishRequest{Topic: "start.t", Payload: payload})
	return err
}

// TestServeWaitsForBroker: a node started before its broker serves
// /healthz but not /readyz, refuses publishes with UNAVAILABLE, logs the
// outage once however many attempts fail, and serves once the broker
// (a real NATS server, a real redis-server) comes up on its address.
func TestServeWaitsForBroker(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) (args []string, up func())
	}{
		{"nats", func(t *testing.T) ([]string, func()) {
			srv := jstest.Start(t)
			url := srv.URL()
			srv.Shutdown()
			return []string{"--broker", "nats", "--nats-url", url}, srv.Restart
		}},
		{"redis", func(t *testing.T) ([]string, func()) {
			srv := redistest.Start(t, redistest.Options{})
			url := srv.URL()
			srv.Kill()
			return []string{"--broker", "redis", "--redis-url", url}, srv.Restart
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			brokerArgs, up := tc.start(t)
			args := append([]string{"serve", "--dev", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0",
				"--log-format", "json", "--log-level", "debug", "--broker-timeout", "1s"}, brokerArgs...)
			httpAddr, grpcAddr, lines := startWaiting(t, herald(t, context.Background(), args...))

			if code, body := getStatus(t, "http://"+httpAddr+"/healthz"); code != http.StatusOK {
				t.Errorf("/healthz while waiting: %d %s, want 200", code, body)
			}
			if code, body := getStatus(t, "http://"+httpAddr+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "waiting for the broker ("+tc.name+")") {
				t.Errorf("/readyz while waiting: %d %q, want 503 saying it waits for the broker", code, body)
			}
			conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := publishStruct(ctx, conn); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "waiting for the broker") {
				t.Errorf("publish while waiting: %v, want UNAVAILABLE saying it waits for the broker", err)
			}
			hc, err := healthgrpc.NewHealthClient(conn).Check(ctx, &healthgrpc.HealthCheckRequest{Service: "herald.v1.PublisherService"})
			if err != nil || hc.GetStatus() != healthgrpc.HealthCheckResponse_NOT_SERVING {
				t.Errorf("gRPC health while waiting: %v %v, want NOT_SERVING", hc.GetStatus(), err)
			}

			// Several attempts fail; one line reports the outage.
			var warnings, attempts int
			next := func() logLine {
				t.Helper()
				select {
				case l, ok := <-lines:
					if !ok {
						t.Fatal("herald serve exited")
					}
					if l.Msg == "broker unavailable" {
						warnings++
					}
					return l
				case <-ctx.Done():
					t.Fatal("herald serve logged nothing more for 60s")
				}
				return logLine{}
			}
			for attempts < 3 {
				if next().Msg == "broker still unavailable: trying again" {
					attempts++
				}
			}
			up()
			for {
				l := next()
				if l.Msg == "broker back" && l.Broker != tc.name {
					t.Errorf("broker back line names %q", l.Broker)
				}
				if l.Msg == "herald listening" {
					if l.HTTP != httpAddr || l.GRPC != grpcAddr {
						t.Fatalf("listening on %s and %s, after waiting on %s and %s", l.HTTP, l.GRPC, httpAddr, grpcAddr)
					}
					break
				}
			}
			if warnings != 1 {
				t.Errorf("%d \"broker unavailable\" lines over %d failed attempts, want 1", warnings, attempts)
			}
			poll.Until(t, 30*time.Second, "/readyz to answer 200", func() bool {
				code, _ := getStatus(t, "http://"+httpAddr+"/readyz")
				return code == http.StatusOK
			})
			// The connection made to the standby server reconnects to the
			// real one.
			poll.Until(t, 30*time.Second, "a publish to succeed", func() bool { return publishStruct(ctx, conn) == nil })
		})
	}
}

// TestServeBrokerStartTimeout: with --broker-start-timeout (here from the
// environment) a node whose broker never comes exits non-zero, saying
// so; without it, SIGTERM ends the wait with a clean exit.
func TestServeBrokerStartTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nowhere := "nats://" + ln.Addr().String()
	ln.Close()
	args := []string{"serve", "--dev", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--log-format", "json",
		"--broker", "nats", "--nats-url", nowhere}

	t.Run("timeout", func(t *testing.T) {
		cmd := herald(t, context.Background(), args...)
		cmd.Env = append(cmd.Env, "HERALD_BROKER_START_TIMEOUT=1s")
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("herald serve exited 0 with no broker and --broker-start-timeout 1s:\n%s", out)
		}
		if !strings.Contains(string(out), "--broker nats not reachable within --broker-start-timeout 1s") {
			t.Fatalf("herald serve's output lacks the reason:\n%s", out)
		}
	})

	t.Run("sigterm", func(t *testing.T) {
		cmd := herald(t, context.Background(), args...)
		_, _, lines := startWaiting(t, cmd)
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		for range lines { // until stderr ends
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("herald serve after SIGTERM while waiting for its broker: %v, want a clean exit", err)
		}
	})
}

// TestGateHandsOverHeldConnections: a connection that the standby's
// listener accepted as it closed goes to the next server, not lost.
func TestGateHandsOverHeldConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	g := &gate{Listener: ln}
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	// Closed while Accept takes the connection: the race that Close's
	// deadline cannot prevent.
	g.closed.Store(true)
	if c, err := g.Accept(); c != nil || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on a closed gate: %v, %v; want net.ErrClosed", c, err)
	}
	next := g.reopen()
	held, err := next.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := io.ReadFull(held, buf); err != nil || buf[0] != 'x' {
		t.Fatalf("the held connection is not the client's: %v %q", err, buf)
	}
	// Then new connections, from the socket.
	go func() {
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			c.Close()
		}
	}()
	c, err := next.Accept()
	if err != nil {
		t.Fatalf("Accept after the held connections: %v", err)
	}
	c.Close()
}

// TestGateCloseWakesAccept: closing the gate ends a blocked Accept and
// leaves the socket open for the next server.
func TestGateCloseWakesAccept(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	g := &gate{Listener: ln}
	done := make(chan error, 1)
	go func() {
		_, err := g.Accept()
		done <- err
	}()
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("a blocked Accept after Close: %v, want net.ErrClosed", err)
	}
	next := g.reopen()
	go func() {
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			c.Close()
		}
	}()
	c, err := next.Accept()
	if err != nil {
		t.Fatalf("the socket after the gate closed: %v", err)
	}
	c.Close()
}
