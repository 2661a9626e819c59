package main

import (
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
