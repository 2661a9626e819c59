package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "herald.yaml")
	yaml := "http-addr: file:1\ngrpc-addr: file:2\nheartbeat: 5s\nmax: 7\ntopic: [a, b]\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.String("config", "", "")
	httpAddr := fs.String("http-addr", ":8080", "")
	grpcAddr := fs.String("grpc-addr", ":9090", "")
	other := fs.String("other", "default", "")
	hb := fs.Duration("heartbeat", time.Second, "")
	maxN := fs.Int("max", 1, "")
	var topics StringList
	fs.Var(&topics, "topic", "")

	env := map[string]string{"HERALD_GRPC_ADDR": "env:2", "HERALD_HTTP_ADDR": "env:1"}
	err := Parse(fs, []string{"--config", file, "--http-addr", "flag:1"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if *httpAddr != "flag:1" {
		t.Errorf("http-addr = %q, want the flag's value", *httpAddr)
	}
	if *grpcAddr != "env:2" {
		t.Errorf("grpc-addr = %q, want the environment's value", *grpcAddr)
	}
	if *other != "default" {
		t.Errorf("other = %q, want the default", *other)
	}
	if *hb != 5*time.Second || *maxN != 7 {
		t.Errorf("heartbeat, max = %v, %d; want the file's 5s, 7", *hb, *maxN)
	}
	if topics.String() != "a,b" {
		t.Errorf("topic = %q, want the file's list a,b", topics.String())
	}
}

func TestErrorsNameTheSetting(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "herald.yaml")
	if err := os.WriteFile(file, []byte("http-adr: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.String("config", "", "")
	fs.String("http-addr", "", "")
	fs.Duration("heartbeat", 0, "")
	err := Parse(fs, []string{"--config", file}, func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), `unknown setting "http-adr"`) {
		t.Errorf("unknown key: err = %v, want it named", err)
	}
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Duration("heartbeat", 0, "")
	err = Parse(fs, nil, func(k string) string {
		if k == "HERALD_HEARTBEAT" {
			return "soon"
		}
		return ""
	})
	if err == nil || !strings.Contains(err.Error(), "HERALD_HEARTBEAT") {
		t.Errorf("bad env value: err = %v, want the variable named", err)
	}
}
