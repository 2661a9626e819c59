package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/schema/schematest"
)

// result is what a herald process printed, and its exit status.
type result struct {
	stdout, stderr string
	code           int
}

// runHerald runs herald with args (and HERALD_* variables in env) to its
// end, within a minute.
func runHerald(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := herald(t, ctx, args...)
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("herald %s still running after a minute:\n%s", strings.Join(args, " "), r.stderr)
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return r
}

// wantUsageError checks that r is the one concise report of a usage
// error: exit status 2, the error once with want in it, then the hint to
// hint's --help, and nothing else.
func wantUsageError(t *testing.T, r result, want, hint string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if r.code != exitUsage || r.stdout != "" || len(lines) != 2 ||
		!strings.HasPrefix(lines[0], "herald: ") || !strings.Contains(lines[0], want) ||
		lines[1] != "Run '"+hint+" --help' for usage." {
		t.Errorf("exit status %d, stdout %q, stderr:\n%s\nwant status 2, nothing on stdout, and on stderr a line saying %q, then the hint to %s --help", r.code, r.stdout, r.stderr, want, hint)
	}
}

func TestUnknownFlagIsOneErrorWithASuggestion(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		want, hint string
	}{
		{[]string{"publish", "--sever", "x"}, "unknown flag: --sever (did you mean --server?)", "herald publish"},
		{[]string{"tail", "--topic", "a", "--urll", "x"}, "unknown flag: --urll (did you mean --url?)", "herald tail"},
		{[]string{"schemas", "list", "--tokn", "x"}, "unknown flag: --tokn (did you mean --token?)", "herald schemas list"},
		{[]string{"serve", "--http-adr", ":1"}, "unknown flag: --http-adr (did you mean --http-addr?)", "herald serve"},
		{[]string{"publish", "-sever", "x"}, "(did you mean --server?)", "herald publish"},
		{[]string{"publish", "--frobnicate"}, "unknown flag: --frobnicate", "herald publish"},
		{[]string{"publish", "--timeout", "soon"}, `invalid argument "soon" for "--timeout"`, "herald publish"},
		{[]string{"publish", "--topic"}, "flag needs an argument: --topic", "herald publish"},
	} {
		wantUsageError(t, runHerald(t, nil, tc.args...), tc.want, tc.hint)
	}
}

func TestUnknownCommandSuggestsOne(t *testing.T) {
	wantUsageError(t, runHerald(t, nil, "pubish", "--topic", "a"), `unknown command "pubish" (did you mean publish?)`, "herald")
	wantUsageError(t, runHerald(t, nil, "schemas", "lst"), `schemas: unknown command "lst" (did you mean get or list?)`, "herald schemas")
	wantUsageError(t, runHerald(t, nil, "frobnicate"), `unknown command "frobnicate"`, "herald")
}

// TestStrayArgumentsAreRefused: a command refuses arguments it does not
// take, before it does anything (publish used to publish, ignoring them).
func TestStrayArgumentsAreRefused(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		want, hint string
	}{
		{[]string{"publish", "--server", "127.0.0.1:1", "--topic", "a", "--type", "google.protobuf.Empty", "extra-arg"}, `publish: unexpected argument "extra-arg"`, "herald publish"},
		{[]string{"serve", "--dev", "extra"}, `serve: unexpected argument "extra"`, "herald serve"},
		{[]string{"tail", "--topic", "a", "extra"}, `tail: unexpected argument "extra"`, "herald tail"},
		{[]string{"token", "--key", "k", "extra"}, `token: unexpected argument "extra"`, "herald token"},
		{[]string{"version", "extra"}, `version: unexpected argument "extra"`, "herald version"},
		{[]string{"schemas", "list", "extra"}, `schemas list: unexpected argument "extra"`, "herald schemas list"},
		{[]string{"schemas", "get", "a.v1.A", "b.v1.B"}, `schemas get: unexpected argument "b.v1.B"`, "herald schemas get"},
		{[]string{"schemas", "get"}, "schemas get: name one message type", "herald schemas get"},
		{[]string{"schemas", "push"}, "schemas push: name one or more descriptor set files", "herald schemas push"},
		{[]string{"completion", "bash", "extra"}, `completion bash: unknown command "extra"`, "herald completion bash"},
	} {
		wantUsageError(t, runHerald(t, nil, tc.args...), tc.want, tc.hint)
	}
}

// TestExitStatus: 2 for what is wrong with the command line or the
// settings, 1 for what fails or is refused once it runs.
func TestExitStatus(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		args []string
		code int
		want string
	}{
		{nil, []string{"serve", "--log-level", "loud"}, exitUsage, "--log-level"},
		{[]string{"HERALD_HEARTBEAT=soon"}, []string{"serve", "--dev"}, exitUsage, "HERALD_HEARTBEAT"},
		{nil, []string{"serve", "--dev", "--config", filepath.Join(t.TempDir(), "missing.yaml")}, exitUsage, "config file"},
		{nil, []string{"publish", "--type", "google.protobuf.Empty"}, exitUsage, "--topic and --type are required"},
		{nil, []string{"tail"}, exitUsage, "at least one --topic is required"},
		{nil, []string{"token", "--key", "k", "--ttl", "0s"}, exitUsage, "--ttl must be positive"},
		{nil, []string{"publish", "--server", "127.0.0.1:1", "--timeout", "5s", "--topic", "a", "--type", "google.protobuf.Empty"}, exitFailed, "Unavailable"},
		{nil, []string{"token", "--key", filepath.Join(t.TempDir(), "missing")}, exitFailed, "missing"},
	} {
		r := runHerald(t, tc.env, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("herald %s: exit status %d, stderr:\n%s\nwant %d and %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.code, tc.want)
		}
	}
}

// TestHelpAtEveryLevel: --help (and -h, and herald help CMD) prints a
// command's help on stdout and succeeds, for every command.
func TestHelpAtEveryLevel(t *testing.T) {
	for _, path := range [][]string{
		nil, {"serve"}, {"publish"}, {"tail"}, {"token"}, {"version"}, {"schemas"},
		{"schemas", "push"}, {"schemas", "list"}, {"schemas", "get"}, {"completion"}, {"completion", "bash"},
	} {
		usage := strings.TrimSpace("herald " + strings.Join(path, " "))
		for _, args := range [][]string{append(path, "--help"), append(path, "-h"), append([]string{"help"}, path...)} {
			r := runHerald(t, nil, args...)
			if r.code != exitOK || !strings.Contains(r.stdout, "Usage:\n  "+usage) {
				t.Errorf("herald %s: exit status %d, stdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
			}
		}
	}
	// The old defect: the flag was taken for the first file.
	r := runHerald(t, nil, "schemas", "push", "--help")
	if strings.Contains(r.stderr+r.stdout, "open --help") || !strings.Contains(r.stdout, "--server") {
		t.Errorf("schemas push --help:\n%s%s", r.stdout, r.stderr)
	}
	r = runHerald(t, nil, "--help")
	for _, want := range []string{"Exit status:", "0  success", "1  the command failed, or the server refused it", "2  usage error", "HERALD_SERVER"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("herald --help does not say %q:\n%s", want, r.stdout)
		}
	}
}

func TestCompletionScripts(t *testing.T) {
	for _, tc := range []struct{ shell, want string }{
		{"bash", "# bash completion V2 for herald"},
		{"zsh", "#compdef herald"},
		{"fish", "# fish completion for herald"},
	} {
		r := runHerald(t, nil, "completion", tc.shell)
		if r.code != exitOK || !strings.Contains(r.stdout, tc.want) {
			t.Errorf("completion %s: exit status %d, stderr %s, stdout starts %.100q", tc.shell, r.code, r.stderr, r.stdout)
			continue
		}
		sh, err := exec.LookPath(tc.shell)
		if err != nil {
			if tc.shell == "bash" {
				t.Fatal("bash is not installed")
			}
			continue // only bash is sure to be installed
		}
		script := filepath.Join(t.TempDir(), "herald."+tc.shell)
		if err := os.WriteFile(script, []byte(r.stdout), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(sh, "-n", script).CombinedOutput(); err != nil {
			t.Errorf("%s -n refuses the completion script: %v\n%s", tc.shell, err, out)
		}
	}
	// The shells ask herald itself what to complete.
	r := runHerald(t, nil, "__complete", "schemas", "")
	for _, want := range []string{"push", "list", "get"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("completing herald schemas: %q lacks %s", r.stdout, want)
		}
	}
	r = runHerald(t, nil, "__complete", "publish", "--ser")
	if !strings.Contains(r.stdout, "--server") {
		t.Errorf("completing herald publish --ser: %q", r.stdout)
	}
}

// TestSchemasCommandsHonourTheirFlags: every schemas command takes the
// flags of schemas after its name, before it, and from the environment
// (the old CLI ignored --server after list, and opened "--server" as
// push's file).
func TestSchemasCommandsHonourTheirFlags(t *testing.T) {
	_, _, grpcAddr, _ := startServeLog(t)
	file := schematest.WriteSet(t, t.TempDir(), "ops.binpb", schematest.Compile(t, map[string]string{"ops/v1/ping.proto": pingV1}))
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"push, flags after", nil, []string{"schemas", "push", "--server", grpcAddr, "--timeout", "20s", file}, "ops.v1.Ping"},
		{"push, flags among files", nil, []string{"schemas", "push", file, "--server=" + grpcAddr}, "ops.binpb: "},
		{"list, flags after", nil, []string{"schemas", "list", "--server", grpcAddr}, "ops.v1.Ping"},
		{"list, flags before", nil, []string{"schemas", "--server", grpcAddr, "list"}, "ops.v1.Ping"},
		{"list, environment", []string{"HERALD_SERVER=" + grpcAddr}, []string{"schemas", "list"}, "ops.v1.Ping"},
		{"get, flags after", nil, []string{"schemas", "get", "ops.v1.Ping", "--server", grpcAddr}, `"from"`},
		{"get, flags first", nil, []string{"schemas", "get", "--server", grpcAddr, "ops.v1.Ping"}, `"from"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runHerald(t, tc.env, tc.args...)
			if r.code != exitOK || !strings.Contains(r.stdout, tc.want) {
				t.Fatalf("herald %s: exit status %d, stdout:\n%s\nstderr:\n%s", strings.Join(tc.args, " "), r.code, r.stdout, r.stderr)
			}
		})
	}
	// A --server that nothing listens on is tried, not replaced.
	for _, args := range [][]string{{"schemas", "list"}, {"schemas", "get", "ops.v1.Ping"}, {"schemas", "push", file}} {
		r := runHerald(t, nil, append(args, "--server", "127.0.0.1:1", "--timeout", "5s")...)
		if r.code != exitFailed || !strings.Contains(r.stderr, "127.0.0.1:1") {
			t.Errorf("herald %s --server 127.0.0.1:1: exit status %d, stdout %q, stderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
	}
}

// TestOneDashLongFlags: the flag package of earlier versions took -server
// as well as --server; scripts written for it keep working.
func TestOneDashLongFlags(t *testing.T) {
	_, _, grpcAddr := startServe(t)
	r := runHerald(t, nil, "publish", "-server", grpcAddr, "-topic=a", "-type", "google.protobuf.Empty")
	if r.code != exitOK || strings.TrimSpace(r.stdout) == "" {
		t.Fatalf("publish with one-dash flags: exit status %d, stdout %q, stderr:\n%s", r.code, r.stdout, r.stderr)
	}
}
