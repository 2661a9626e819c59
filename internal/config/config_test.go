package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "herald.yaml")
	yaml := "http-addr: file:1\ngrpc-addr: file:2\nheartbeat: 5s\nmax: 7\ntopic: [a, b]\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
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
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.String("config", "", "")
	fs.String("http-addr", "", "")
	fs.Duration("heartbeat", 0, "")
	err := Parse(fs, []string{"--config", file}, func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), `unknown setting "http-adr"`) {
		t.Errorf("unknown key: err = %v, want it named", err)
	}
	fs = pflag.NewFlagSet("t", pflag.ContinueOnError)
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

func TestListsFromEnvironmentAndFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "herald.yaml")
	yaml := "origins:\n  - https://a.example\n  - https://b.example\ntopics: [a, b]\npair: x=1,2\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want map[string]string // flag → its items joined by |
	}{
		{"file", nil, nil, map[string]string{
			"origins": "https://a.example|https://b.example", "topics": "a|b", "pair": "x=1,2", "addr": ":1"}},
		{"environment splits lists at commas", map[string]string{
			"HERALD_ORIGINS": "https://a.example,https://b.example",
			"HERALD_TOPICS":  " c , d,,",
			"HERALD_ADDR":    "host:1,host:2", // not a list: kept whole
		}, nil, map[string]string{
			"origins": "https://a.example|https://b.example", "topics": "c|d", "pair": "x=1,2", "addr": "host:1,host:2"}},
		{"the command line is never split", map[string]string{"HERALD_TOPICS": "c,d"}, []string{"--topics", "e,f", "--topics", "g"},
			map[string]string{"origins": "https://a.example|https://b.example", "topics": "e,f|g", "pair": "x=1,2", "addr": ":1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			fs.String("config", "", "")
			fs.String("addr", ":1", "")
			lists := map[string]*StringList{"origins": {}, "topics": {}, "pair": {}}
			for name, l := range lists {
				fs.Var(l, name, "")
			}
			if err := Parse(fs, append([]string{"--config", file}, tc.args...), func(k string) string { return tc.env[k] }); err != nil {
				t.Fatal(err)
			}
			for name, want := range tc.want {
				got := fs.Lookup(name).Value.String()
				if l, ok := lists[name]; ok {
					got = strings.Join(*l, "|")
				}
				if got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
		})
	}
}

func TestAlias(t *testing.T) {
	file := filepath.Join(t.TempDir(), "herald.yaml")
	if err := os.WriteFile(file, []byte("old-key: [f1, f2]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
		used bool
	}{
		{"new name", []string{"--key", "a"}, nil, "a", false},
		{"old name", []string{"--old-key", "a", "--old-key", "b"}, nil, "a,b", true},
		{"both names", []string{"--key", "a", "--old-key", "b"}, nil, "a,b", true},
		{"old variable", nil, map[string]string{"HERALD_OLD_KEY": "e1,e2"}, "e1,e2", true},
		{"old YAML key", []string{"--config", file}, nil, "f1,f2", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			fs.String("config", "", "")
			var keys StringList
			var used bool
			fs.Var(&keys, "key", "")
			Alias(fs, "old-key", "key", &used)
			if err := Parse(fs, tc.args, func(k string) string { return tc.env[k] }); err != nil {
				t.Fatal(err)
			}
			if keys.String() != tc.want || used != tc.used {
				t.Errorf("key = %q, used %v; want %q, %v", keys.String(), used, tc.want, tc.used)
			}
			if !IsList(fs.Lookup("old-key")) {
				t.Error("the alias of a list is not a list")
			}
		})
	}
}

// TestApplyAfterTheCommandLine: Apply, run once a command parser has
// parsed the command line (flags among arguments), leaves what the command
// line set, and marks what it sets as changed, as a command line would.
func TestApplyAfterTheCommandLine(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	server := fs.String("server", "localhost:9090", "")
	topic := fs.String("topic", "", "")
	verbose := fs.Bool("verbose", false, "")
	var used bool
	Alias(fs, "chatty", "verbose", &used)
	if err := fs.Parse([]string{"file.binpb", "--topic", "flag", "--chatty"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"HERALD_TOPIC": "env", "HERALD_SERVER": "env:1"}
	if err := Apply(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if *topic != "flag" || *server != "env:1" || !*verbose || !used {
		t.Errorf("topic %q, server %q, verbose %v (alias used %v); want flag, env:1, true (true)", *topic, *server, *verbose, used)
	}
	if !fs.Changed("server") {
		t.Error("a flag set from the environment does not count as changed")
	}
	if got := fs.Args(); len(got) != 1 || got[0] != "file.binpb" {
		t.Errorf("arguments %q", got)
	}
}
