//go:build faults && linux

package faults

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// The suite's network: one namespace per host, all on one bridge that lives
// in the client namespace, where the test process itself runs (TestMain
// starts it again there). Nothing is added to the machine's own namespace,
// and the hosts have no route beyond 10.77.0.0/24, so no packet leaves.
//
//	client  10.77.0.1   the test process: publishers, subscribers, toxiproxy
//	h1..h3  10.77.0.11… herald serve
//	j1..j3  10.77.0.21… nats-server (a JetStream cluster)
//	redis   10.77.0.31  redis-server
type host struct {
	name string // short name, also the namespace's suffix
	ip   string
}

var (
	clientHost = host{"c", "10.77.0.1"}
	heraldHost = []host{{"h1", "10.77.0.11"}, {"h2", "10.77.0.12"}, {"h3", "10.77.0.13"}}
	natsHost   = []host{{"j1", "10.77.0.21"}, {"j2", "10.77.0.22"}, {"j3", "10.77.0.23"}}
	redisHost  = host{"r", "10.77.0.31"}
)

func allHosts() []host {
	hs := []host{clientHost}
	hs = append(hs, heraldHost...)
	hs = append(hs, natsHost...)
	return append(hs, redisHost)
}

// Environment that passes the outer process's findings to the inner one.
const (
	envPrefix  = "HERALD_FAULTS_NETNS"   // the namespaces' prefix, set in the inner process
	envBin     = "HERALD_FAULTS_BIN"     // directory of the built herald and nats-server
	envMissing = "HERALD_FAULTS_MISSING" // why the topology cannot be built here
	// requireEnv turns a missing prerequisite from a skip into a failure
	// (CI sets it).
	requireEnv = "HERALD_REQUIRE_NETNS"
)

// ns returns the namespace name of a host.
func ns(h host) string { return os.Getenv(envPrefix) + h.name }

// binary returns the path of a binary built by TestMain.
func binary(name string) string { return filepath.Join(os.Getenv(envBin), name) }

// needTopology skips the test, loudly, or fails it under HERALD_REQUIRE_NETNS
// when the namespaces could not be built.
func needTopology(t *testing.T) {
	t.Helper()
	if why := os.Getenv(envMissing); why != "" {
		if os.Getenv(requireEnv) != "" {
			t.Fatalf("the fault suite cannot run: %s (%s is set)", why, requireEnv)
		}
		t.Skipf("SKIPPED: the fault suite cannot run here: %s", why)
	}
}

func TestMain(m *testing.M) {
	if os.Getenv(envPrefix) != "" {
		os.Exit(m.Run()) // inside the client namespace
	}
	if why := prerequisites(); why != "" {
		fmt.Fprintf(os.Stderr, "faults: the fault suite cannot run here: %s\n", why)
		os.Setenv(envMissing, why)
		os.Exit(m.Run())
	}
	os.Exit(outer(m))
}

// prerequisites says what is missing to build the topology, or "".
func prerequisites() string {
	if os.Geteuid() != 0 {
		return "network namespaces need root"
	}
	for _, tool := range []string{"ip", "iptables", "redis-server"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " is not installed"
		}
	}
	return ""
}

// outer builds the binaries and the namespaces, runs the tests again inside
// the client namespace, and removes the namespaces however that ended.
func outer(m *testing.M) int {
	dir, err := os.MkdirTemp("", "herald-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	for _, b := range []struct{ name, tags, pkg string }{
		{"herald", "", "github.com/heraldhq/herald/cmd/herald"},
		// A deliberately broken Herald (cmd/herald/faultbug.go) that the
		// checker must catch.
		{"herald-faultbug", "faultbug", "github.com/heraldhq/herald/cmd/herald"},
		{"nats-server", "", "github.com/nats-io/nats-server/v2"},
	} {
		out, err := exec.Command(goTool, "build", "-tags", b.tags, "-o", filepath.Join(dir, b.name), b.pkg).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "go build -tags %q %s: %v\n%s", b.tags, b.pkg, err, out)
			return 1
		}
	}
	prefix := fmt.Sprintf("hf%d", os.Getpid()%100000)
	defer teardown(prefix)
	if err := setup(prefix); err != nil {
		fmt.Fprintln(os.Stderr, "faults: building the namespaces:", err)
		if os.Getenv(requireEnv) != "" {
			return 1
		}
		os.Setenv(envMissing, "cannot build network namespaces: "+err.Error())
		return m.Run()
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", prefix + clientHost.name, self}, os.Args[1:]...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), envPrefix+"="+prefix, envBin+"="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		if exit, ok := err.(*exec.ExitError); ok {
			return exit.ExitCode()
		}
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// run runs a command and returns its error with its output.
func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// setup makes a namespace per host and wires each to the bridge in the
// client's.
func setup(prefix string) error {
	c := prefix + clientHost.name
	steps := [][]string{
		{"ip", "netns", "add", c},
		{"ip", "-n", c, "link", "set", "lo", "up"},
		{"ip", "-n", c, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", c, "addr", "add", clientHost.ip + "/24", "dev", "br0"},
		{"ip", "-n", c, "link", "set", "br0", "up"},
	}
	for _, h := range allHosts()[1:] {
		n := prefix + h.name
		steps = append(steps,
			[]string{"ip", "netns", "add", n},
			[]string{"ip", "-n", n, "link", "set", "lo", "up"},
			[]string{"ip", "-n", c, "link", "add", "v" + h.name, "type", "veth", "peer", "name", "eth0", "netns", n},
			[]string{"ip", "-n", c, "link", "set", "v" + h.name, "master", "br0"},
			[]string{"ip", "-n", c, "link", "set", "v" + h.name, "up"},
			[]string{"ip", "-n", n, "addr", "add", h.ip + "/24", "dev", "eth0"},
			[]string{"ip", "-n", n, "link", "set", "eth0", "up"},
		)
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			return err
		}
	}
	return nil
}

// teardown deletes the namespaces (their veth pairs and iptables rules go
// with them).
func teardown(prefix string) {
	for _, h := range allHosts() {
		_ = run("ip", "netns", "del", prefix+h.name)
	}
}
