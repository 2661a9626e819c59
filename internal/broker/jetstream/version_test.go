package jetstream

import (
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/poll"
)

func TestCheckServerVersion(t *testing.T) {
	for _, tc := range []struct {
		version      string
		warn, refuse bool
	}{
		{"2.9.10", false, true},
		{"1.4.1", false, true},
		{"2.10.22", true, false},
		{"2.11.0", false, false},
		{"2.15.2", false, false},
		{"3.0.0-beta.1", false, false},
		{"", false, false},
	} {
		warning, err := checkServerVersion(tc.version)
		if (warning != "") != tc.warn || (err != nil) != tc.refuse {
			t.Errorf("NATS %q: warning %q, error %v; want a warning %v, refused %v", tc.version, warning, err, tc.warn, tc.refuse)
		}
		if err != nil && !strings.Contains(err.Error(), "needs NATS 2.10 or newer") {
			t.Errorf("NATS %q: the refusal %q does not say what is needed", tc.version, err)
		}
	}
}

// TestRefusesAnOldServer starts a real NATS server older than 2.10 when
// one is installed (Debian 12's nats-server is 2.9): New refuses it at
// once, naming the version needed, rather than start and fail every
// resume later.
func TestRefusesAnOldServer(t *testing.T) {
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		t.Skip("no nats-server installed; TestCheckServerVersion covers the versions")
	}
	out, _ := exec.Command(bin, "--version").Output()
	var major, minor int
	if _, err := fmt.Sscanf(strings.TrimPrefix(strings.TrimSpace(string(out)), "nats-server: v"), "%d.%d", &major, &minor); err != nil || major > 2 || major == 2 && minor >= 10 {
		t.Skipf("the installed nats-server is %q, not older than 2.10", out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "-js", "-a", "127.0.0.1", "-p", port, "-sd", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	poll.Until(t, 20*time.Second, "nats-server to listen", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	_, err = New(t.Context(), Options{URL: "nats://" + addr, Prefix: "old", Timeout: time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "needs NATS 2.10 or newer") {
		t.Fatalf("New against nats-server %s: %v; want a refusal naming the version needed", strings.TrimSpace(string(out)), err)
	}
}
