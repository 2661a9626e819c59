package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// tokenLeeway is the clock-skew tolerance of `herald serve` (jwtauth's
// default, not a flag): a token is accepted until exp plus this, and a
// stream opened with it ends then. Tokens meant to expire soon are minted
// with exp already this far in the past.
const tokenLeeway = 30 * time.Second

// A server is the herald process under test.
type server struct {
	cmd                *exec.Cmd
	pid                int
	http, grpc, debug  string // addresses from its start-up log
	secret             []byte // signs its tokens (HS256)
	exited             chan struct{}
	exitErr            error // set before exited is closed
	logPath            string
	startedAt, readyAt time.Time
}

// buildHerald builds ./cmd/herald into dir (with the race detector when
// race is set) and returns the binary's path. It runs from the module
// root, which it finds from the working directory.
func buildHerald(ctx context.Context, dir string, race bool) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "herald")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/herald")...)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/herald: %w", err)
	}
	return bin, nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := string(out[:len(out)-1])
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the herald module (go env GOMOD is empty): run from the repository")
	}
	return filepath.Dir(mod), nil
}

// startServer runs `herald serve` on loopback ports with tokens required,
// a debug listener (to force a collection before each heap reading) and
// the memory broker's retention small enough to fill during the warm-up.
// Its log goes to dir/herald.log.
func startServer(bin, dir string, extra []string) (*server, error) {
	secret := make([]byte, 24)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	secret = []byte(hex.EncodeToString(secret)) // 48 bytes, printable
	secretFile := filepath.Join(dir, "hs256.secret")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		return nil, err
	}
	args := []string{"serve",
		"--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--debug-addr", "127.0.0.1:0",
		"--log-format", "json", "--auth-hs256-secret-file", secretFile,
		"--heartbeat", "5s", "--retention-events", "100",
	}
	args = append(args, extra...)
	s := &server{secret: secret, exited: make(chan struct{}), logPath: filepath.Join(dir, "herald.log"), startedAt: time.Now()}
	s.cmd = exec.Command(bin, args...)
	// Die with the soak, however it ends.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	s.cmd.Stdout = logf
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	s.pid = s.cmd.Process.Pid
	ready := make(chan error, 1)
	go func() {
		defer logf.Close()
		br := bufio.NewReader(stderr)
		found := false
		for {
			line, err := br.ReadBytes('\n')
			_, _ = logf.Write(line)
			if !found && len(line) > 0 {
				var rec struct{ Msg, HTTP, GRPC, Debug string }
				if json.Unmarshal(line, &rec) == nil && rec.Msg == "herald listening" {
					s.http, s.grpc, s.debug = rec.HTTP, rec.GRPC, rec.Debug
					found = true
					ready <- nil
				}
			}
			if err != nil {
				if !found {
					ready <- fmt.Errorf("herald exited before listening; see %s", s.logPath)
				}
				_, _ = io.Copy(logf, br)
				return
			}
		}
	}()
	go func() { s.exitErr = s.cmd.Wait(); close(s.exited) }()
	select {
	case err := <-ready:
		if err != nil {
			s.stop()
			return nil, err
		}
	case <-time.After(60 * time.Second):
		s.stop()
		return nil, fmt.Errorf("herald did not log \"herald listening\" within 60s; see %s", s.logPath)
	}
	if s.debug == "" {
		s.stop()
		return nil, fmt.Errorf("herald's start-up line names no debug listener; see %s", s.logPath)
	}
	s.readyAt = time.Now()
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

// stop asks herald to shut down and kills it after 20s.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// grants is the "herald" claim of a token.
type grants struct {
	Publish   []string `json:"publish,omitempty"`
	Subscribe []string `json:"subscribe,omitempty"`
	Schemas   []string `json:"schemas,omitempty"`
}

// token mints a token for subject with g that herald accepts for ttl from
// now: its exp is ttl minus the leeway away, in the past for ttl shorter
// than the leeway.
func (s *server) token(subject string, g grants, ttl time.Duration) string {
	t, err := jwt.NewBuilder().
		Subject(subject).
		Expiration(time.Now().Add(ttl-tokenLeeway)).
		Claim("herald", g).
		Build()
	if err != nil {
		panic(fmt.Sprintf("building a token: %v", err)) // the inputs are fixed: a bug
	}
	signed, err := jwt.Sign(t, jwt.WithKey(jwa.HS256(), s.secret))
	if err != nil {
		panic(fmt.Sprintf("signing a token: %v", err))
	}
	return string(signed)
}

var (
	publishGrants   = grants{Publish: []string{"soak.>"}}
	subscribeGrants = grants{Subscribe: []string{"soak.>"}}
	schemaGrants    = grants{Schemas: []string{"soak.>"}}
)
