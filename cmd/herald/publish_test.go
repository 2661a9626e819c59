package main

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
)

// TestDuplicatePublishPrintsOnlyTheID: a retry with the same idempotency
// key prints the id on stdout, as the first publish did, so that
// ID=$(herald publish ...) holds the id alone; the note goes to stderr.
func TestDuplicatePublishPrintsOnlyTheID(t *testing.T) {
	_, _, grpcAddr := startServe(t)
	args := []string{"publish", "--server", grpcAddr, "--topic", "orders.eu", "--type", "google.protobuf.Struct", "--data", `{"n":1}`, "--idempotency-key", "order-1"}
	first := runHerald(t, nil, args...)
	if first.code != exitOK || first.stderr != "" {
		t.Fatalf("first publish: exit status %d, stderr %q", first.code, first.stderr)
	}
	again := runHerald(t, nil, args...)
	if again.code != exitOK || again.stdout != first.stdout || strings.Count(again.stdout, "\n") != 1 {
		t.Fatalf("the retry: exit status %d, stdout %q; want 0 and the first publish's %q", again.code, again.stdout, first.stdout)
	}
	if !strings.Contains(again.stderr, "duplicate: "+strings.TrimSpace(first.stdout)) {
		t.Fatalf("the retry's stderr %q does not say it is a duplicate", again.stderr)
	}
}

// TestPublishNamesTheTLSMismatch: a plaintext publish to a TLS port, or
// the reverse, says which flag to change (gRPC says only "error reading
// server preface: EOF", or that a handshake failed).
func TestPublishNamesTheTLSMismatch(t *testing.T) {
	certFile, keyFile, _ := writeSelfSigned(t)
	_, _, tlsGRPC := startServe(t, "--grpc-tls-cert", certFile, "--grpc-tls-key", keyFile)
	_, plainHTTP, plainGRPC := startServe(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"plaintext to TLS", []string{"--server", tlsGRPC}, "the server speaks TLS: add --tls"},
		{"plaintext to TLS, a type asked of the server", []string{"--server", tlsGRPC, "--type", "shop.v1.Cart"}, "the server speaks TLS: add --tls"},
		{"TLS to plaintext", []string{"--server", plainGRPC, "--tls-ca", certFile}, "the server does not speak TLS: drop --tls"},
		{"the HTTP port", []string{"--server", plainHTTP}, "is --server Herald's gRPC address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"publish", "--topic", "a", "--type", "google.protobuf.Empty", "--timeout", "20s"}, tc.args...)
			r := runHerald(t, nil, args...)
			if r.code != exitFailed || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit status %d, stderr:\n%s\nwant 1 and %q", r.code, r.stderr, tc.want)
			}
		})
	}
	r := runHerald(t, nil, "publish", "--server", tlsGRPC, "--tls-ca", certFile, "--topic", "a", "--type", "google.protobuf.Empty")
	if r.code != exitOK {
		t.Fatalf("publish over TLS: exit status %d: %s", r.code, r.stderr)
	}
}

// TestPublishDeleteDropsTheTopicFromSnapshots: herald publish --delete
// marks a topic's state as deleted, so a snapshot of the topics no longer
// holds it, and prints the deletion's id like a publish. A server run
// with --max-snapshot-topics 1 refuses the snapshot of two topics.
func TestPublishDeleteDropsTheTopicFromSnapshots(t *testing.T) {
	_, httpAddr, grpcAddr := startServe(t)
	_, limitedHTTP, limitedGRPC := startServe(t, "--max-snapshot-topics", "1")
	snapshotURL := "http://" + httpAddr + "/v1/events?topic=monitoring.>&snapshot=true"
	for _, topic := range []string{"monitoring.eu-1", "monitoring.eu-2"} {
		for _, server := range []string{grpcAddr, limitedGRPC} {
			r := runHerald(t, nil, "publish", "--server", server, "--topic", topic, "--type", "google.protobuf.Struct", "--data", `{"players":3}`)
			if r.code != exitOK {
				t.Fatalf("publish to %s: exit status %d: %s", topic, r.code, r.stderr)
			}
		}
	}
	status, body := get(t, "http://"+limitedHTTP+"/v1/events?topic=monitoring.>&snapshot=true")
	if status != http.StatusBadRequest || !strings.Contains(body, "more than 1 topics (--max-snapshot-topics)") {
		t.Fatalf("a snapshot of two topics with --max-snapshot-topics 1: %d %s; want 400 naming the limit", status, body)
	}
	del := runHerald(t, nil, "publish", "--server", grpcAddr, "--topic", "monitoring.eu-1", "--delete")
	if del.code != exitOK || strings.Count(del.stdout, "\n") != 1 || del.stderr != "" {
		t.Fatalf("publish --delete: exit status %d, stdout %q, stderr %q; want 0 and an id", del.code, del.stdout, del.stderr)
	}

	resp, err := http.Get(snapshotURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var frames []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "data: {\"topics\"") {
		if strings.HasPrefix(sc.Text(), "data: ") {
			frames = append(frames, sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if sc.Text() != `data: {"topics":1,"lastEventId":"`+strings.TrimSpace(del.stdout)+`"}` || len(frames) != 1 || !strings.Contains(frames[0], `"players":3`) {
		t.Fatalf("the snapshot after deleting monitoring.eu-1 sent %q then %q; want monitoring.eu-2 alone, synced up to the deletion %s", frames, sc.Text(), del.stdout)
	}

	wantUsageError(t, runHerald(t, nil, "publish", "--server", grpcAddr, "--topic", "a", "--delete", "--type", "google.protobuf.Struct"),
		"--delete takes no --type", "herald publish")
}
