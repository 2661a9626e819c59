package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/heraldhq/herald/bridge"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/broker/memory"
)

// TestTLS: with bridge.Config.TLS the HTTP listener speaks HTTPS, HTTP/2
// and HTTP/1.1 by ALPN, and many streams share one HTTP/2 connection.
func TestTLS(t *testing.T) {
	t.Parallel()
	cert, _, _, pool := selfSigned(t, t.TempDir())
	h := startHerald(t, "tls", bridge.Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}}, memory.Options{})
	ctx := ctxT(t)

	h2 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	h1 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}}, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	for proto, tr := range map[string]*http.Transport{"h2": h2, "http/1.1": h1} {
		resp, err := (&http.Client{Transport: tr}).Get(h.url() + "/healthz")
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		resp.Body.Close()
		if resp.TLS == nil || resp.TLS.NegotiatedProtocol != proto {
			t.Errorf("ALPN offering %s: negotiated %v, %s", proto, resp.TLS != nil && resp.TLS.NegotiatedProtocol != "", resp.Proto)
		}
	}
	h1.CloseIdleConnections()
	h2.CloseIdleConnections()
	if resp, err := http.Get("http://" + h.tap.addr() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP on the TLS listener: %s, want 400", resp.Status)
		}
	}

	// Ten go-sse streams over one HTTP/2 connection.
	before := h.tap.stats().Accepted
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	var streams []*goStream
	for i := range 10 {
		st := subscribeGo(t, client, fmt.Sprintf("%s/v1/events?topic=tls.%d", h.url(), i))
		st.waitOpen(t)
		streams = append(streams, st)
	}
	for i, st := range streams {
		s, _ := structpb.NewStruct(map[string]any{"i": float64(i)})
		id, err := h.publish(ctx, request(t, fmt.Sprintf("tls.%d", i), s))
		if err != nil {
			t.Fatal(err)
		}
		if ev := st.next(t); ev.LastEventID != id || ev.Data != fmt.Sprintf(`{"i":%d}`, i) {
			t.Fatalf("stream %d got %q %q, want %q", i, ev.LastEventID, ev.Data, id)
		}
	}
	if n := h.tap.stats().Accepted - before; n != 1 {
		t.Errorf("10 streams took %d TCP connections, want 1 (HTTP/2)", n)
	}

	types := builtinTypes(t)
	if _, err := bridge.New(bridge.Config{Broker: h.broker, Types: types, TLS: &tls.Config{}}); err == nil || !strings.Contains(err.Error(), "Config.TLS") {
		t.Errorf("a TLS config without a certificate: %v, want an error naming Config.TLS", err)
	}
}

// TestServeTLSFlags runs the herald binary with --tls-cert and --tls-key.
func TestServeTLSFlags(t *testing.T) {
	t.Parallel()
	_, certFile, keyFile, pool := selfSigned(t, t.TempDir())
	httpAddr, grpcAddr := runHerald(t, "--dev", "--tls-cert", certFile, "--tls-key", keyFile, "--retry", "100ms")
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	t.Cleanup(client.CloseIdleConnections)

	st := subscribeGo(t, client, "https://"+httpAddr+"/v1/events?topic=flags")
	st.waitOpen(t)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s, _ := structpb.NewStruct(map[string]any{"tls": true})
	resp, err := heraldv1.NewPublisherServiceClient(conn).Publish(ctxT(t), request(t, "flags", s))
	if err != nil {
		t.Fatal(err)
	}
	if ev := st.next(t); ev.LastEventID != resp.GetId() || ev.Data != `{"tls":true}` {
		t.Fatalf("got %q %q", ev.LastEventID, ev.Data)
	}
	r, err := client.Get("https://" + httpAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, r.Body)
	r.Body.Close()
	if r.ProtoMajor != 2 {
		t.Errorf("protocol %s, want HTTP/2", r.Proto)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", certFile}, "go together"},
		{[]string{"--tls-key", keyFile}, "go together"},
		{[]string{"--tls-cert", keyFile, "--tls-key", keyFile}, "--tls-cert"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, heraldBinary(t), append([]string{"serve", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"}, tc.args...)...).CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("serve %v: %v, output %q; want a failure mentioning %q", tc.args, err, out, tc.want)
		}
	}
}
