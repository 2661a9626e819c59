package main

import (
	"runtime"
	"strings"
	"testing"
)

// TestVersion: herald version and --version print the module version, the
// VCS revision and time ("unknown" when the build did not record them, as
// with -buildvcs=false) and the Go version.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}, {"-v"}} {
		r := runHerald(t, nil, args...)
		if r.code != exitOK || !strings.HasPrefix(r.stdout, "herald ") || !strings.Contains(r.stdout, "go:       "+runtime.Version()+" ") ||
			!strings.Contains(r.stdout, "revision: ") || !strings.Contains(r.stdout, "time:     ") {
			t.Errorf("herald %s: exit status %d, stdout:\n%s\nstderr:\n%s", args[0], r.code, r.stdout, r.stderr)
		}
	}
}

func TestVersionText(t *testing.T) {
	v := version{module: "v1.4.0", revision: "e78f5c8d", time: "2026-10-30T12:00:00Z", goVersion: "go1.26.8", modified: true}
	want := "herald v1.4.0\n  revision: e78f5c8d (with uncommitted changes)\n  time:     2026-10-30T12:00:00Z\n  go:       go1.26.8 " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	if got := v.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
