package deploy

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestSystemdUnitVerifies runs systemd-analyze verify on the unit (with
// ExecStart's binary path pointed at one that exists: verify checks it),
// failing on any complaint, as verify exits 0 after warnings such as an
// unknown or misspelt key; and asks systemd-analyze security for the
// unit's exposure. Without systemd-analyze it skips, loudly; with
// HERALD_REQUIRE_SYSTEMD=1 (CI) it fails instead.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		msg := "systemd-analyze is not installed (apt-get install systemd): the unit is not verified"
		if os.Getenv("HERALD_REQUIRE_SYSTEMD") == "1" {
			t.Fatal(msg + ", and HERALD_REQUIRE_SYSTEMD=1 requires it")
		}
		fmt.Fprintln(os.Stderr, "\n*** SKIPPING THE SYSTEMD UNIT CHECK: "+msg+" ***")
		t.Skip("SKIPPED: " + msg)
	}
	unit, err := os.ReadFile("systemd/herald.service")
	if err != nil {
		t.Fatal(err)
	}
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(unit, []byte("ExecStart=/usr/local/bin/herald ")) {
		t.Fatal("ExecStart does not run /usr/local/bin/herald")
	}
	copyPath := filepath.Join(t.TempDir(), "herald.service")
	if err := os.WriteFile(copyPath, bytes.ReplaceAll(unit, []byte("/usr/local/bin/herald"), []byte(truePath)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", copyPath).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}

	out, _ = exec.Command(analyze, "security", "--offline=true", "--no-pager", copyPath).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for herald.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security printed no exposure level:\n%s", out)
	}
	if level, _ := strconv.ParseFloat(string(m[1]), 64); level > 2 {
		t.Errorf("systemd-analyze security: exposure %s, want at most 2 (of 10): hardening was lost\n%s", m[1], out)
	}
	t.Logf("systemd-analyze security: exposure %s", m[1])
}

// unitSettings returns the unit's [Service] settings, for the tests that
// check what it runs.
func unitSettings(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("systemd/herald.service")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	section := ""
	for line := range strings.SplitSeq(string(raw), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, _ := strings.Cut(line, "=")
			out[k] = v
		}
	}
	return out
}

func TestSystemdUnitHardening(t *testing.T) {
	s := unitSettings(t)
	for k, want := range map[string]string{
		"DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
		"PrivateTmp": "yes", "CapabilityBoundingSet": "", "LimitNOFILE": "1048576", "Restart": "on-failure",
		"KillSignal": "SIGTERM", "EnvironmentFile": "-/etc/herald/herald.env",
	} {
		if got, ok := s[k]; !ok || got != want {
			t.Errorf("%s=%q, want %q", k, got, want)
		}
	}
}
