package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/poll"
)

// requireNetns turns a missing `unshare --net` (not root, no unshare or
// nsenter) from a skip into a failure of TestDocsShellBlocks. CI sets it
// (.ci/run): there the docs are always run.
var requireNetns = os.Getenv("HERALD_REQUIRE_NETNS") == "1"

// Bounds on what the docs' commands may take, so that a command that hangs
// fails the test instead of stalling it. They are generous: the first
// `make run` or `go build` of a fresh copy compiles.
const (
	docCommandTimeout = 5 * time.Minute // a command that ends by itself
	docServerTimeout  = 3 * time.Minute // until a server listens
	docStreamTimeout  = 30 * time.Second
)

// TestDocsShellBlocks runs the shell blocks of README.md, docs/*.md and
// the examples' READMEs as a reader would paste them: verbatim, with
// `herald` on PATH, from the repository root, on the documented default
// ports. Each session (a block, or the blocks of a doc that belong
// together, see docs_blocks_test.go) runs in namespaces of its own: a
// network namespace with only loopback, so the default ports are free and
// nothing leaves the machine, and a mount namespace where the repository
// is overlaid with a scratch directory, so what the blocks write (a
// secret, bin/, a descriptor set) is gone when the session ends.
//
// A server (`herald serve`, `make run`) runs in the background until the
// session ends, and the session goes on once it listens on its ports; a
// stream (`curl -N`, `herald tail`) is stopped once it has printed what the
// doc shows it prints. Every other command must succeed (or fail, where the
// doc says it is refused) and print what the doc shows.
func TestDocsShellBlocks(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := readDocBlocks(root)
	if err != nil {
		t.Fatal(err)
	}
	sessions, notRun, err := docSessions(blocks)
	if err != nil {
		t.Fatal(err)
	}
	if len(sessions) < 5 {
		t.Fatalf("only %d sessions of shell blocks in the docs", len(sessions))
	}
	for _, b := range notRun {
		t.Logf("not run: %s: %s", b, b.notRun)
	}
	netnsAvailable(t)

	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "herald"), "./cmd/herald")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/herald: %v\n%s", err, out)
	}
	goenv, err := exec.Command("go", "env", "GOMODCACHE", "GOCACHE").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	caches := strings.Fields(string(goenv))
	if len(caches) != 2 {
		t.Fatalf("go env GOMODCACHE GOCACHE: %q", goenv)
	}

	for _, s := range sessions {
		t.Run(strings.ReplaceAll(s.name(), "/", "_"), func(t *testing.T) {
			t.Parallel()
			for _, prog := range s.blocks[0].needs {
				if _, err := exec.LookPath(prog); err != nil {
					netnsUnavailable(t, "%s, which %s needs, is not installed", prog, s.name())
				}
			}
			path := bin + string(os.PathListSeparator) + os.Getenv("PATH")
			if s.blocks[0].noHerald {
				// As on a machine where herald was never installed.
				var dirs []string
				for _, d := range filepath.SplitList(os.Getenv("PATH")) {
					if _, err := os.Stat(filepath.Join(d, "herald")); err != nil {
						dirs = append(dirs, d)
					}
				}
				path = strings.Join(dirs, string(os.PathListSeparator))
			}
			work := t.TempDir()
			sh := newDocShell(t, work, root, s.blocks[0].dir, []string{
				"PATH=" + path,
				// make install and go install write into the session's GOPATH.
				"GOPATH=" + filepath.Join(work, "gopath"),
				"GOMODCACHE=" + caches[0],
				"GOCACHE=" + caches[1],
			})
			if after := s.blocks[0].after; after != "" {
				cmds, err := parseCommands(after)
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range cmds {
					sh.run(t, c)
				}
			}
			for _, b := range s.blocks {
				cmds, err := parseCommands(b.text)
				if err != nil {
					t.Fatalf("%s: %v", b, err)
				}
				if b.output != "" && len(cmds) > 0 && cmds[len(cmds)-1].expect == "" {
					cmds[len(cmds)-1].expect = b.output
				}
				for _, c := range cmds {
					t.Logf("%s: %s", b, c.text)
					sh.run(t, c)
				}
			}
		})
	}
}

// netnsAvailable skips the test, loudly, where this process cannot make a
// network namespace; under HERALD_REQUIRE_NETNS=1 it fails instead.
func netnsAvailable(t *testing.T) {
	for _, prog := range []string{"unshare", "nsenter", "ip", "bash"} {
		if _, err := exec.LookPath(prog); err != nil {
			netnsUnavailable(t, "%s is not installed", prog)
		}
	}
	if out, err := exec.Command("unshare", "--net", "--mount", "--", "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		netnsUnavailable(t, "unshare --net --mount: %v: %s (it needs root)", err, bytes.TrimSpace(out))
	}
}

func netnsUnavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if requireNetns {
		t.Fatalf("HERALD_REQUIRE_NETNS=1 and the docs cannot be run: %s", msg)
	}
	fmt.Fprintf(os.Stderr, "\n"+
		"!!! ================================================================\n"+
		"!!! SKIPPING %s: %s\n"+
		"!!! The docs' shell blocks run as root in network namespaces; CI runs them.\n"+
		"!!! ================================================================\n\n", t.Name(), msg)
	t.Skipf("SKIPPED: %s", msg)
}

// docShell runs the commands of one session in a network namespace of its
// own. Like a reader's terminal, it keeps variables and the working
// directory from one command to the next: each command's shell reads them
// from state/ and writes them back.
type docShell struct {
	state  string
	env    []string
	holder *exec.Cmd      // the namespace's first process; it lives as long as the session
	procs  []*docProcess  // servers and streams started in the background
	stop   io.WriteCloser // closing it ends the holder
}

func newDocShell(t *testing.T, work, root, dir string, env []string) *docShell {
	t.Helper()
	sh := &docShell{state: filepath.Join(work, "state")}
	scratch := filepath.Join(work, "scratch")
	for _, d := range []string{sh.state, scratch} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(sh.state, "cwd"), []byte(filepath.Join(root, dir)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "HERALD_"), name == "GOBIN", name == "GOFLAGS", name == "PWD", name == "OLDPWD":
			continue // settings of this test run, not of a reader's shell
		}
		sh.env = append(sh.env, kv)
	}
	sh.env = append(sh.env, env...)

	// The holder makes the namespaces, overlays the repository with a
	// tmpfs, brings loopback up and then waits for its stdin to close;
	// every command enters its namespaces.
	sh.holder = exec.Command("unshare", "--net", "--mount", "--", "sh", "-c", `set -e
mount --make-rprivate /
mount -t tmpfs tmpfs "$1"
mkdir "$1/upper" "$1/work"
mount -t overlay overlay -o "lowerdir=$2,upperdir=$1/upper,workdir=$1/work" "$2"
ip link set lo up
echo up
exec cat`, "sh", scratch, root)
	stdin, err := sh.holder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	sh.stop = stdin
	stdout, err := sh.holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	sh.holder.Stderr = os.Stderr
	if err := sh.holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sh.close)
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "up\n" {
		t.Fatalf("unshare --net --mount: %q, %v", line, err)
	}
	return sh
}

// close stops what the session started, and the namespace with it.
func (sh *docShell) close() {
	for _, p := range sh.procs {
		p.kill()
	}
	sh.stop.Close()
	sh.holder.Wait()
}

// command is a shell, in the namespace, that runs text as a reader's
// terminal would: after the previous commands' variables and directory.
// Unless background, it saves them for the next command.
func (sh *docShell) command(text string, background bool) *exec.Cmd {
	q := strconv.Quote(sh.state)
	script := fmt.Sprintf("[ -f %[1]s/env ] && . %[1]s/env\ncd \"$(cat %[1]s/cwd)\" || exit 111\nset -a\n%[2]s\n", q, text)
	if !background {
		script += fmt.Sprintf("__rc=$?\nset +a\nexport -p > %[1]s/env\npwd > %[1]s/cwd\nexit $__rc\n", q)
	}
	ns := "/proc/" + strconv.Itoa(sh.holder.Process.Pid) + "/ns/"
	cmd := exec.Command("nsenter", "--net="+ns+"net", "--mount="+ns+"mnt", "--", "bash", "-c", script)
	cmd.Env = sh.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// run runs one command of a doc and checks it does what the doc says.
func (sh *docShell) run(t *testing.T, c docCommand) {
	t.Helper()
	switch {
	case c.isServer():
		p := sh.start(t, c)
		ports := c.ports()
		err := poll.Wait(docServerTimeout, fmt.Sprintf("%q to listen on %v", c.text, ports), func() bool {
			return p.exited() || sh.listening(ports)
		})
		if err != nil {
			t.Fatalf("%v\n%s", err, p.output())
		}
		if p.exited() {
			t.Fatalf("%s: exited before it listened on %v:\n%s", c.text, ports, p.output())
		}
	case c.isStream():
		p := sh.start(t, c)
		shown := func() bool {
			if c.expect != "" {
				ok, _ := matchShown(c.expect, p.stdout.String())
				return ok
			}
			for line := range strings.SplitSeq(p.stdout.String(), "\n") {
				if sseLineRE.MatchString(line) {
					return true
				}
			}
			return false
		}
		what := "an event stream"
		if c.expect != "" {
			what = "what the doc shows:\n" + c.expect
		}
		err := poll.Wait(docStreamTimeout, fmt.Sprintf("%q to print %s", c.text, what), func() bool {
			return p.exited() || shown()
		})
		if err != nil {
			t.Fatalf("%v\n%s", err, p.output())
		}
		if !shown() {
			t.Fatalf("%s: exited without printing %s\n%s", c.text, what, p.output())
		}
		p.kill()
	default:
		ctx, cancel := context.WithTimeout(context.Background(), docCommandTimeout)
		defer cancel()
		cmd := sh.command(c.text, false)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
		select {
		case err = <-done:
		case <-ctx.Done():
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			t.Fatalf("%s: still running after %v:\nstdout:\n%s\nstderr:\n%s", c.text, docCommandTimeout, &stdout, &stderr)
		}
		switch {
		case c.refused && err == nil:
			t.Fatalf("%s: succeeded, but the doc says it is refused:\nstdout:\n%s\nstderr:\n%s", c.text, &stdout, &stderr)
		case c.refused && !explains(stderr.String()+stdout.String(), c.why):
			t.Fatalf("%s: refused, but not for the reason the doc gives (%s):\nstdout:\n%s\nstderr:\n%s", c.text, c.why, &stdout, &stderr)
		case c.refused:
			t.Logf("%s: refused, as the doc says: %v: %s", c.text, err, bytes.TrimSpace(stderr.Bytes()))
		case err != nil:
			t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", c.text, err, &stdout, &stderr)
		}
		if c.expect != "" {
			if ok, missing := matchShown(c.expect, stdout.String()); !ok {
				t.Fatalf("%s: printed\n%s\nwhere the doc shows\n%s\n(no line like %q)", c.text, &stdout, c.expect, missing)
			}
		}
		if c.describe != "" && strings.TrimSpace(stdout.String()) == "" {
			t.Fatalf("%s: printed nothing; the doc says it %s", c.text, c.describe)
		}
	}
}

// start runs a server or a stream in the background until the session
// ends.
func (sh *docShell) start(t *testing.T, c docCommand) *docProcess {
	t.Helper()
	p := &docProcess{cmd: sh.command(c.text, true), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	sh.procs = append(sh.procs, p)
	return p
}

// listening reports whether the namespace has a TCP listener on each port.
func (sh *docShell) listening(ports []string) bool {
	open := map[string]bool{}
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", sh.holder.Process.Pid, f))
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			fields := strings.Fields(line)
			if len(fields) < 4 || fields[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hex, _ := strings.Cut(fields[1], ":")
			if port, err := strconv.ParseUint(hex, 16, 16); err == nil {
				open[strconv.FormatUint(port, 10)] = true
			}
		}
	}
	for _, p := range ports {
		if !open[p] {
			return false
		}
	}
	return true
}

// docProcess is a command running in the background.
type docProcess struct {
	cmd            *exec.Cmd
	stdout, stderr lockedBuffer
	done           chan struct{}
}

func (p *docProcess) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill ends the process and every process it started.
func (p *docProcess) kill() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

func (p *docProcess) output() string {
	return "stdout:\n" + p.stdout.String() + "\nstderr:\n" + p.stderr.String()
}
