package main

import (
	"context"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	gosse "github.com/tmaxmax/go-sse"

	"github.com/heraldhq/herald/internal/schema/schematest"
)

const pingV1 = `syntax = "proto3";
package ops.v1;
message Ping { string from = 1; }
`

func waitLog(t *testing.T, logs <-chan string, want string) string {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case l := <-logs:
			if strings.Contains(l, want) {
				return l
			}
		case <-deadline:
			t.Fatalf("no log line containing %q", want)
		}
	}
}

func TestDescriptorFilesReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	schematest.WriteSet(t, dir, "ops.binpb", schematest.Compile(t, map[string]string{"ops/v1/ping.proto": pingV1}))
	srv, httpAddr, grpcAddr, logs := startServeLog(t, "--descriptors", dir)

	publish := func(data string) (string, error) {
		b, err := herald(t, context.Background(), "publish", "--server", grpcAddr, "--topic", "ops.pings", "--type", "ops.v1.Ping", "--data", data).CombinedOutput()
		return strings.TrimSpace(string(b)), err
	}
	if out, err := publish(`{"from":"a"}`); err != nil {
		t.Fatalf("publishing a type from --descriptors: %v %s", err, out)
	}
	if out, err := publish(`{"from":"a","seq":"1"}`); err == nil {
		t.Fatalf("field seq accepted before it exists: %s", out)
	}

	// Evolve the schema in place, then SIGHUP.
	schematest.WriteSet(t, dir, "ops.binpb", schematest.Compile(t, map[string]string{"ops/v1/ping.proto": strings.Replace(pingV1, "string from = 1;", "string from = 1; int64 seq = 2;", 1)}))
	if err := srv.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, "schemas reloaded")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/v1/events?topic=ops.pings", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := make(chan gosse.Event, 1)
	go func() {
		for ev, err := range gosse.Read(resp.Body, nil) {
			if err != nil {
				return
			}
			events <- ev
		}
	}()
	id, err := publish(`{"from":"b","seq":"7"}`)
	if err != nil {
		t.Fatalf("publish with the reloaded schema: %v %s", err, id)
	}
	select {
	case ev := <-events:
		if ev.LastEventID != id || ev.Type != "ops.v1.Ping" || ev.Data != `{"from":"b","seq":"7"}` {
			t.Fatalf("got %q %q %s", ev.LastEventID, ev.Type, ev.Data)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no event")
	}

	// An incompatible file is refused on SIGHUP; the old type keeps working.
	schematest.WriteSet(t, dir, "ops.binpb", schematest.Compile(t, map[string]string{"ops/v1/ping.proto": strings.Replace(pingV1, "string from = 1;", "int32 from = 1;", 1)}))
	if err := srv.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	line := waitLog(t, logs, "not reloaded")
	if !strings.Contains(line, "ops.v1.Ping field 1 (from) changed type from string to int32") {
		t.Fatalf("refusal log line does not name the conflict: %s", line)
	}
	if out, err := publish(`{"from":"c","seq":"8"}`); err != nil {
		t.Fatalf("old type stopped working after a refused reload: %v %s", err, out)
	}
}

func TestSchemasPushAndList(t *testing.T) {
	_, _, grpcAddr, _ := startServeLog(t)
	file := schematest.WriteSet(t, t.TempDir(), "ops.binpb", schematest.Compile(t, map[string]string{"ops/v1/ping.proto": pingV1}))
	out, err := herald(t, context.Background(), "schemas", "--server", grpcAddr, "push", file).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "added   ops.v1.Ping") {
		t.Fatalf("schemas push: %v\n%s", err, out)
	}
	out, err = herald(t, context.Background(), "schemas", "--server", grpcAddr, "list").CombinedOutput()
	if err != nil || !regexpLine(string(out), "ops.v1.Ping", "pushed", "ops/v1/ping.proto") || !regexpLine(string(out), "google.protobuf.Struct", "builtin") {
		t.Fatalf("schemas list: %v\n%s", err, out)
	}
	out, err = herald(t, context.Background(), "schemas", "--server", grpcAddr, "get", "ops.v1.Ping").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"from"`) {
		t.Fatalf("schemas get: %v\n%s", err, out)
	}
	// publish finds the pushed type through the server.
	out, err = herald(t, context.Background(), "publish", "--server", grpcAddr, "--topic", "ops", "--type", "ops.v1.Ping", "--data", `{"from":"cli"}`).CombinedOutput()
	if err != nil {
		t.Fatalf("publish of a pushed type: %v %s", err, out)
	}
}

// regexpLine reports whether some line holds all words.
func regexpLine(text string, words ...string) bool {
	for _, l := range strings.Split(text, "\n") {
		all := true
		for _, w := range words {
			all = all && strings.Contains(l, w)
		}
		if all {
			return true
		}
	}
	return false
}
