package deploy

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// podman returns the path of podman, or skips t loudly (fails it with
// HERALD_REQUIRE_PODMAN=1, as in CI).
func podman(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("podman")
	if err == nil {
		return bin
	}
	msg := "podman is not installed (apt-get install podman): the image cannot be built and checked"
	if os.Getenv("HERALD_REQUIRE_PODMAN") == "1" {
		t.Fatal(msg + ", and HERALD_REQUIRE_PODMAN=1 requires it")
	}
	fmt.Fprintln(os.Stderr, "\n*** SKIPPING THE IMAGE TEST: "+msg+" ***")
	t.Skip("SKIPPED: " + msg)
	return ""
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out)
}

// TestImage builds the image with make image and checks what a container
// runtime reads of it (podman image inspect) and what it holds (its
// exported filesystem), running its binary outside a container: this
// machine may not run containers.
func TestImage(t *testing.T) {
	bin := podman(t)
	const version = "v0.0.0-imagetest"
	image := fmt.Sprintf("localhost/herald-imagetest:%d", os.Getpid())
	run(t, "make", "-C", "..", "image", "IMAGE="+image, "VERSION="+version, "PODMAN="+bin)
	t.Cleanup(func() { _ = exec.Command(bin, "rmi", "--force", image).Run() })

	var inspect []struct {
		Config struct {
			User         string
			ExposedPorts map[string]struct{}
			Entrypoint   []string
			Cmd          []string
			Labels       map[string]string
		}
		Healthcheck struct{ Test []string }
		Os          string
	}
	if err := json.Unmarshal([]byte(run(t, bin, "image", "inspect", image)), &inspect); err != nil || len(inspect) != 1 {
		t.Fatalf("podman image inspect: %v (%d images)", err, len(inspect))
	}
	cfg := inspect[0].Config
	if cfg.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532 (numeric, not root)", cfg.User)
	}
	for _, port := range []string{"8080/tcp", "9090/tcp"} {
		if _, ok := cfg.ExposedPorts[port]; !ok {
			t.Errorf("port %s not exposed: %v", port, cfg.ExposedPorts)
		}
	}
	if !slices.Equal(cfg.Entrypoint, []string{"/herald"}) || !slices.Equal(cfg.Cmd, []string{"serve"}) {
		t.Errorf("entrypoint %q and cmd %q, want [/herald] and [serve]", cfg.Entrypoint, cfg.Cmd)
	}
	revision := strings.TrimSpace(run(t, "git", "rev-parse", "HEAD"))
	for label, want := range map[string]string{
		"org.opencontainers.image.version":  version,
		"org.opencontainers.image.revision": revision,
		"org.opencontainers.image.source":   "https://github.com/heraldhq/herald",
		"org.opencontainers.image.title":    "herald",
	} {
		if got := cfg.Labels[label]; got != want {
			t.Errorf("label %s = %q, want %q", label, got, want)
		}
	}
	health := inspect[0].Healthcheck.Test
	if len(health) < 2 || health[0] != "CMD" || health[1] != "/herald" || !slices.Contains(health, "health") {
		t.Fatalf("health check %q, want [CMD /herald health ...]", health)
	}

	root := export(t, bin, image)
	herald := filepath.Join(root, "herald")
	checkStatic(t, herald)
	if passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd")); err != nil || !strings.Contains(string(passwd), ":65532:65532:") {
		t.Errorf("/etc/passwd names no user 65532: %v %q", err, passwd)
	}
	if ca, err := os.ReadFile(filepath.Join(root, "etc/ssl/certs/ca-certificates.crt")); err != nil || !bytes.Contains(ca, []byte("BEGIN CERTIFICATE")) {
		t.Errorf("/etc/ssl/certs/ca-certificates.crt holds no certificates: %v", err)
	}
	if out := run(t, herald, "version"); !strings.Contains(out, "herald "+version) || !strings.Contains(out, "revision: "+revision) {
		t.Errorf("/herald version printed %q, want version %s and revision %s", out, version, revision)
	}
	if out := run(t, herald, append(cfg.Cmd, "--help")...); !strings.Contains(out, "--broker-start-timeout") {
		t.Errorf("/herald serve --help lacks --broker-start-timeout:\n%s", out)
	}

	// The health check, run as the runtime runs it against a node of this
	// binary whose address comes from the environment, as the node's does.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	env := append(os.Environ(), "HERALD_HTTP_ADDR="+addr)
	serve := exec.Command(herald, "serve", "--dev", "--grpc-addr", "127.0.0.1:0")
	serve.Env = env
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = serve.Process.Kill(); _ = serve.Wait() })
	check := func() error {
		cmd := exec.Command(filepath.Join(root, health[1]), health[2:]...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for err := check(); err != nil; err = check() {
		select {
		case <-ctx.Done():
			t.Fatalf("the image's health check against a node on %s: %v", addr, err)
		case <-tick.C:
		}
	}
}

// export unpacks the image's filesystem (podman create, podman export)
// into a temporary directory and returns it.
func export(t *testing.T, bin, image string) string {
	t.Helper()
	id := strings.TrimSpace(run(t, bin, "create", image))
	t.Cleanup(func() { _ = exec.Command(bin, "rm", "--force", id).Run() })
	dir := t.TempDir()
	archive := filepath.Join(dir, "fs.tar")
	run(t, bin, "export", "--output", archive, id)
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	root := filepath.Join(dir, "root")
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Join(root, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(name, root+string(filepath.Separator)) {
			continue
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(name, 0o755)
		case tar.TypeReg:
			if err = os.MkdirAll(filepath.Dir(name), 0o755); err == nil {
				err = writeFile(name, tr, h.FileInfo().Mode().Perm())
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func writeFile(name string, r io.Reader, perm os.FileMode) error {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// checkStatic fails t unless the file is an executable that needs no
// dynamic loader: scratch has no libc.
func checkStatic(t *testing.T, path string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("/herald: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("/herald is linked dynamically (it names an ELF interpreter): build it with CGO_ENABLED=0")
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm()&0o111 == 0 {
		t.Fatalf("/herald is not executable: %v", err)
	}
}
