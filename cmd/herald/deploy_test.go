package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The deployment files (deploy/) run herald serve; these tests check, with
// serve's own flag parsing and config loader, that what they run is a
// valid invocation and that their stop timeouts exceed its
// --shutdown-timeout. deploy/'s own tests check the files as systemd and
// Kubernetes read them.

// systemdDuration parses a systemd time span as the unit writes them
// ("30s", "1min 30s", or bare seconds).
func systemdDuration(t *testing.T, v string) time.Duration {
	t.Helper()
	v = strings.NewReplacer("min", "m", " ", "").Replace(v)
	if !strings.ContainsAny(v, "hms") {
		v += "s"
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("time span %q: %v", v, err)
	}
	return d
}

func TestSystemdUnitRunsValidServe(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/systemd/herald.service")
	if err != nil {
		t.Fatal(err)
	}
	var execStart, stopTimeout string
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			execStart = v
		}
		if v, ok := strings.CutPrefix(line, "TimeoutStopSec="); ok {
			stopTimeout = v
		}
	}
	words := strings.Fields(execStart)
	if len(words) < 2 || words[0] != "/usr/local/bin/herald" || words[1] != "serve" {
		t.Fatalf("ExecStart=%s, want /usr/local/bin/herald serve ...", execStart)
	}
	example, err := filepath.Abs("../../deploy/systemd/herald.yaml")
	if err != nil {
		t.Fatal(err)
	}
	args := words[2:]
	for i, a := range args {
		if a == "/etc/herald/herald.yaml" {
			args[i] = example // the file the unit's comment installs there
		}
		if strings.ContainsAny(a, "%$") {
			t.Fatalf("ExecStart=%s: %q needs systemd's expansion, which this test does not do", execStart, a)
		}
	}
	c, err := parseServeFlags(args, io.Discard)
	if err != nil {
		t.Fatalf("ExecStart=%s: %v", execStart, err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("ExecStart=%s: %v", execStart, err)
	}
	if c.security.dev {
		t.Error("the unit runs herald in development mode")
	}
	if stop := systemdDuration(t, stopTimeout); stop <= c.shutdownTimeout {
		t.Errorf("TimeoutStopSec=%s does not exceed --shutdown-timeout %v: systemd would kill a graceful stop", stopTimeout, c.shutdownTimeout)
	}
}
