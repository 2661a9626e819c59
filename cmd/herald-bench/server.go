package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// A server is a process under test: Herald, one of the floors or a peer.
type server struct {
	kind string // "herald", "floor", "raw", "grpc" or "nchan"
	cmd  *exec.Cmd
	pid  int
	// Addresses read from the start-up log.
	http, grpc, ingest, debug string
	exited                    chan struct{}
	stopSignal                syscall.Signal // 0: SIGTERM
}

// startServer runs bin with args and waits for its start-up log line,
// {"msg": readyMsg, ...}, reading the addresses from it. Lines before it
// may name a debug listener ({"msg": "debug listening", "addr": ...}).
// The rest of its log goes to logPath.
func startServer(kind, bin string, args, env []string, readyMsg, logPath string) (*server, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	// Die with the harness, however it ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout = logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	s := &server{kind: kind, cmd: cmd, pid: cmd.Process.Pid, exited: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		defer logf.Close()
		br := bufio.NewReader(stderr)
		found := false
		for {
			line, err := br.ReadBytes('\n')
			if len(line) > 0 {
				_, _ = logf.Write(line)
			}
			if !found && len(line) > 0 {
				var rec struct {
					Msg, Addr, HTTP, GRPC, Ingest string
				}
				if json.Unmarshal(line, &rec) == nil {
					switch rec.Msg {
					case "debug listening":
						s.debug = rec.Addr
					case readyMsg:
						s.http, s.grpc, s.ingest = rec.HTTP, rec.GRPC, rec.Ingest
						found = true
						ready <- nil
					}
				}
			}
			if err != nil {
				if !found {
					ready <- fmt.Errorf("%s exited before listening; see %s", kind, logPath)
				}
				_, _ = io.Copy(logf, br)
				return
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(s.exited) }()
	select {
	case err := <-ready:
		if err != nil {
			s.stop()
			return nil, err
		}
	case <-time.After(30 * time.Second):
		s.stop()
		return nil, fmt.Errorf("%s did not log %q within 30s; see %s", kind, readyMsg, logPath)
	}
	return s, nil
}

// alive reports whether the process is still running.
func (s *server) alive() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// stop asks the process to shut down (with stopSignal) and kills it
// after 15s.
func (s *server) stop() {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return // not started here (--target)
	}
	sig := s.stopSignal
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

func (s *server) rss() int64 {
	if s == nil || s.pid == 0 {
		return 0
	}
	n, _ := procRSS(s.pid)
	return n
}

// buildHerald builds ./cmd/herald into dir and returns the binary's path.
func buildHerald(ctx context.Context, pkg, dir string) (string, error) {
	bin := filepath.Join(dir, "herald")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s: %w", pkg, err)
	}
	return bin, nil
}

// hasFlag reports whether `herald serve --help` lists flag, so that the
// harness can measure builds from before the flag existed.
func hasFlag(bin, flag string) bool {
	out, _ := exec.Command(bin, "serve", "--help").CombinedOutput()
	for line := range strings.SplitSeq(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.TrimLeft(f[0], "-") == flag && strings.HasPrefix(f[0], "-") {
			return true
		}
	}
	return false
}

// startHerald runs `herald serve` on loopback ports, with open access
// (--dev) when the build has it.
func (b *bench) startHerald(scenario string, extra ...string) (*server, error) {
	return b.startHeraldWith(scenario, b.heraldDev, extra...)
}

// startHeraldWith is startHerald with open access only if dev is set;
// without it the server refuses whoever has no token.
func (b *bench) startHeraldWith(scenario string, dev bool, extra ...string) (*server, error) {
	if b.cfg.targetHTTP != "" {
		s := &server{kind: "herald", pid: b.cfg.targetPID, http: b.cfg.targetHTTP, grpc: b.cfg.targetGRPC, exited: make(chan struct{})}
		return s, nil
	}
	args := []string{"serve", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--log-format", "json",
		"--heartbeat", b.cfg.heartbeat.String()}
	if dev {
		args = append(args, "--dev") // no tokens: anyone on loopback may publish and subscribe
	}
	if b.cfg.profileDir != "" {
		args = append(args, "--debug-addr", "127.0.0.1:0")
	}
	if b.schemas != "" {
		args = append(args, "--descriptors", b.schemas)
	}
	args = append(args, extra...)
	args = append(args, strings.Fields(b.cfg.serverArgs)...)
	return startServer("herald", b.heraldBin, args, strings.Fields(b.cfg.serverEnv), "herald listening", filepath.Join(b.dir, scenario+"-herald.log"))
}

// startFloor runs this binary as a floor server: mode "sse" or "grpc";
// kind "floor", or "raw" for the raw-socket SSE floor; extra flags follow.
func (b *bench) startFloor(scenario, kind, mode string, extra ...string) (*server, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"floor-" + mode, "--heartbeat", b.cfg.heartbeat.String()}
	switch kind {
	case "raw":
		args = append(args, "--raw")
	case "grpc":
		args = append(args, "--grpc")
	}
	if b.cfg.profileDir != "" {
		args = append(args, "--debug-addr", "127.0.0.1:0")
	}
	args = append(args, extra...)
	return startServer(kind, self, args, nil, "floor listening", filepath.Join(b.dir, scenario+"-"+kind+".log"))
}

var errStopped = errors.New("server stopped")
