package javaexample

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gosse "github.com/tmaxmax/go-sse"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/heraldhq/herald/client"
	ordersv1 "github.com/heraldhq/herald/gen/orders/v1"
	"github.com/heraldhq/herald/internal/heraldtest"
)

// order mirrors OrderPublisher.order(i) in Java.
func order(i int) *ordersv1.OrderPlaced {
	return &ordersv1.OrderPlaced{
		OrderId:  fmt.Sprintf("java-%04d", i),
		Customer: fmt.Sprintf("Zoë Ñandú 山田 🚀 #%d", i),
		Items: []*ordersv1.LineItem{
			{Sku: "sku-café", Name: "Café crème ☕", Quantity: int32(i%5 + 1), UnitPriceCents: 250},
			{Sku: `sku-"quoted"\`, Name: "line\nbreak\ttab", Quantity: 1, UnitPriceCents: 1999},
		},
		TotalCents: int64(i%5+1)*250 + 1999,
		Currency:   "EUR",
		PlacedAt:   &timestamppb.Timestamp{Seconds: 1767225600 + int64(i), Nanos: int32(i * 1000)},
		Channel:    ordersv1.Channel_CHANNEL_MOBILE,
	}
}

// requireJava skips the test, naming what is missing, unless
// HERALD_REQUIRE_JAVA=1, in which case a missing tool fails it.
func requireJava(t *testing.T) {
	t.Helper()
	var missing []string
	for _, tool := range []string{"javac", "java", "protoc", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, "no "+tool)
		}
	}
	if _, err := exec.LookPath("grpc_java_plugin"); err != nil {
		if _, err := exec.LookPath("protoc-gen-grpc-java"); err != nil {
			missing = append(missing, "no grpc_java_plugin")
		}
	}
	include := cmp(os.Getenv("PROTOC_INCLUDE"), "/usr/include")
	if _, err := os.Stat(filepath.Join(include, "google/protobuf/any.proto")); err != nil {
		missing = append(missing, "no well-known .proto files in "+include)
	}
	if _, err := exec.LookPath("bash"); err == nil {
		if out, err := exec.Command("bash", "-c", ". ./classpath.sh").CombinedOutput(); err != nil {
			missing = append(missing, cmp(strings.TrimSpace(string(out)), err.Error()))
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("Java publisher NOT TESTED: %s.\n"+
		"Install: apt-get install default-jdk-headless protobuf-compiler libprotobuf-dev protobuf-compiler-grpc-java-plugin "+
		"libgrpc-java libnetty-java libprotobuf-java libguava-java libperfmark-java", strings.Join(missing, "; "))
	if os.Getenv("HERALD_REQUIRE_JAVA") == "1" {
		t.Fatal(msg + "\n(HERALD_REQUIRE_JAVA=1: the Java toolchain is required)")
	}
	fmt.Fprintln(os.Stderr, "=== SKIP", t.Name()+":", msg)
	t.Skip(msg)
}

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// startHerald runs a real Herald on 127.0.0.1:0 and returns its HTTP and
// gRPC addresses.
func startHerald(t *testing.T) (httpURL, grpcAddr string) {
	t.Helper()
	s := heraldtest.Start(t, heraldtest.Options{})
	return s.URL, s.GRPCAddr
}

func TestJavaPublisherEventsArriveOverSSE(t *testing.T) {
	requireJava(t)
	const n = 25
	const topic = "orders.java"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	build := t.TempDir()
	env := append(os.Environ(), "BUILD_DIR="+build)
	cmd := exec.CommandContext(ctx, "bash", "build.sh")
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, out)
	}

	httpURL, grpcAddr := startHerald(t)

	// Subscribe first: once the response headers are in, the stream is
	// registered and sees every event published after.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, httpURL+"/v1/events?topic="+topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("subscribe: %s", resp.Status)
	}
	events := make(chan gosse.Event, n+1)
	go func() {
		defer close(events)
		for ev, err := range gosse.Read(resp.Body, nil) {
			if err != nil {
				return
			}
			events <- ev
		}
	}()

	var stdout, stderr bytes.Buffer
	cmd = exec.CommandContext(ctx, "bash", "run.sh", "--target", grpcAddr, "--topic", topic, "--count", fmt.Sprint(n))
	cmd.Env, cmd.Stdout, cmd.Stderr = env, &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("run.sh: %v\n%s", err, stderr.String())
	}
	// One line per order: its id, and the event id Herald answered.
	var ids []string
	for sc := bufio.NewScanner(&stdout); sc.Scan(); {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || f[0] != order(len(ids)).GetOrderId() {
			t.Fatalf("publisher printed %q as line %d", sc.Text(), len(ids))
		}
		ids = append(ids, f[1])
	}
	if len(ids) != n {
		t.Fatalf("publisher printed %d ids, want %d\n%s", len(ids), n, stderr.String())
	}

	next := func() gosse.Event {
		t.Helper()
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("the SSE stream ended")
			}
			return ev
		case <-ctx.Done():
			t.Fatal("no event in time")
		}
		return gosse.Event{}
	}
	for i := range n {
		ev := next()
		if ev.LastEventID != ids[i] || ev.Type != "orders.v1.OrderPlaced" {
			t.Fatalf("event %d: id %q type %q, want id %q type orders.v1.OrderPlaced", i, ev.LastEventID, ev.Type, ids[i])
		}
		if !json.Valid([]byte(ev.Data)) || strings.ContainsAny(ev.Data, "\r\n") {
			t.Fatalf("event %d: data is not one line of JSON: %q", i, ev.Data)
		}
		// Text stays UTF-8, not \u escapes; quotes, backslashes and
		// control characters are escaped.
		for _, want := range []string{`"Zoë Ñandú 山田 🚀 #` + fmt.Sprint(i) + `"`, `"Café crème ☕"`, `"sku-\"quoted\"\\"`, `"line\nbreak\ttab"`, `"totalCents":"`} {
			if !strings.Contains(ev.Data, want) {
				t.Errorf("event %d: data lacks %s: %s", i, want, ev.Data)
			}
		}
		var got ordersv1.OrderPlaced
		if err := protojson.Unmarshal([]byte(ev.Data), &got); err != nil {
			t.Fatalf("event %d: %v: %s", i, err, ev.Data)
		}
		if !proto.Equal(&got, order(i)) {
			t.Fatalf("event %d:\n got %v\nwant %v", i, &got, order(i))
		}
	}

	// Nothing else was published: the next event is a marker from Go.
	c, err := client.New(grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	marker, err := c.Publish(ctx, topic, &ordersv1.OrderPlaced{OrderId: "marker"})
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(); ev.LastEventID != marker {
		t.Fatalf("after the Java events got %q (%s), want only the marker %q", ev.LastEventID, ev.Data, marker)
	}
}
