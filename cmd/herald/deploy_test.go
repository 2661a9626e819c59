package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The deployment files (deploy/) run herald serve; these tests check, with
// serve's own flag parsing and config loader, that what they run is a
// valid invocation and that their stop timeouts exceed its
// --shutdown-timeout. deploy/'s own tests check the files as systemd and
// Kubernetes read them.

// systemdDuration parses a systemd time span as the unit writes them
// ("30s", "1min 30s", or bare seconds).
func systemdDuration(t *testing.T, v string) time.Duration {
	t.Helper()
	v = strings.NewReplacer("min", "m", " ", "").Replace(v)
	if !strings.ContainsAny(v, "hms") {
		v += "s"
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("time span %q: %v", v, err)
	}
	return d
}

func TestSystemdUnitRunsValidServe(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/systemd/herald.service")
	if err != nil {
		t.Fatal(err)
	}
	var execStart, stopTimeout string
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			execStart = v
		}
		if v, ok := strings.CutPrefix(line, "TimeoutStopSec="); ok {
			stopTimeout = v
		}
	}
	words := strings.Fields(execStart)
	if len(words) < 2 || words[0] != "/usr/local/bin/herald" || words[1] != "serve" {
		t.Fatalf("ExecStart=%s, want /usr/local/bin/herald serve ...", execStart)
	}
	example, err := filepath.Abs("../../deploy/systemd/herald.yaml")
	if err != nil {
		t.Fatal(err)
	}
	args := words[2:]
	for i, a := range args {
		if a == "/etc/herald/herald.yaml" {
			args[i] = example // the file the unit's comment installs there
		}
		if strings.ContainsAny(a, "%$") {
			t.Fatalf("ExecStart=%s: %q needs systemd's expansion, which this test does not do", execStart, a)
		}
	}
	c, err := parseServeFlags(args, io.Discard)
	if err != nil {
		t.Fatalf("ExecStart=%s: %v", execStart, err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("ExecStart=%s: %v", execStart, err)
	}
	if c.security.dev {
		t.Error("the unit runs herald in development mode")
	}
	if stop := systemdDuration(t, stopTimeout); stop <= c.shutdownTimeout {
		t.Errorf("TimeoutStopSec=%s does not exceed --shutdown-timeout %v: systemd would kill a graceful stop", stopTimeout, c.shutdownTimeout)
	}
}

// TestHelmChartRunsValidServe renders the Helm chart (deploy/helm/herald)
// with the helm pinned in tools/go.mod, for the default values and the
// 3-node JetStream example, and loads the ConfigMap's config file with
// the Deployment's arguments as herald serve does: an unknown key, a bad
// value or an invalid combination fails here.
func TestHelmChartRunsValidServe(t *testing.T) {
	for _, values := range []string{"", "../../deploy/helm/herald/ci/jetstream-3.yaml", "../../deploy/helm/herald/ci/redis-3.yaml"} {
		name := "defaults"
		if values != "" {
			name = filepath.Base(values)
		}
		t.Run(name, func(t *testing.T) {
			args := []string{"tool", "-modfile=../../tools/go.mod", "helm", "template", "herald", "../../deploy/helm/herald"}
			if values != "" {
				args = append(args, "--values", values)
			}
			out, err := exec.Command("go", args...).Output()
			if err != nil {
				t.Fatalf("helm template: %v", err)
			}
			var config string
			var container struct {
				Args []string
				Env  []struct{ Name string }
			}
			var pod struct {
				TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
				Containers                    []struct {
					Lifecycle struct {
						PreStop struct{ Sleep struct{ Seconds int } } `yaml:"preStop"`
					}
				}
			}
			dec := yaml.NewDecoder(bytes.NewReader(out))
			for {
				var doc struct {
					Kind string
					Data map[string]string
					Spec struct {
						Template struct {
							Spec yaml.Node
						}
					}
				}
				if err := dec.Decode(&doc); err == io.EOF {
					break
				} else if err != nil {
					t.Fatal(err)
				}
				switch doc.Kind {
				case "ConfigMap":
					config = doc.Data["herald.yaml"]
				case "Deployment":
					var spec struct{ Containers []yaml.Node }
					if err := doc.Spec.Template.Spec.Decode(&spec); err != nil || len(spec.Containers) != 1 {
						t.Fatalf("the Deployment's pod: %v", err)
					}
					if err := spec.Containers[0].Decode(&container); err != nil {
						t.Fatal(err)
					}
					if err := doc.Spec.Template.Spec.Decode(&pod); err != nil {
						t.Fatal(err)
					}
				}
			}
			file := filepath.Join(t.TempDir(), "herald.yaml")
			if err := os.WriteFile(file, []byte(config), 0o600); err != nil {
				t.Fatal(err)
			}
			if len(container.Args) == 0 || container.Args[0] != "serve" {
				t.Fatalf("the container runs %q, want serve", container.Args)
			}
			serveArgs := slices.Clone(container.Args[1:])
			for i, a := range serveArgs {
				if a == "/etc/herald/herald.yaml" {
					serveArgs[i] = file
				}
			}
			for _, e := range container.Env {
				t.Setenv(e.Name, "from-a-secret")
			}
			c, err := parseServeFlags(serveArgs, io.Discard)
			if err != nil {
				t.Fatalf("herald serve %q with the chart's herald.yaml:\n%s\n%v", serveArgs, config, err)
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("the chart's settings: %v", err)
			}
			grace := time.Duration(pod.TerminationGracePeriodSeconds) * time.Second
			preStop := time.Duration(pod.Containers[0].Lifecycle.PreStop.Sleep.Seconds) * time.Second
			if grace <= preStop+c.shutdownTimeout {
				t.Errorf("terminationGracePeriodSeconds %v does not exceed the preStop sleep %v plus --shutdown-timeout %v", grace, preStop, c.shutdownTimeout)
			}
			switch name {
			case "jetstream-3.yaml":
				if c.broker.kind != "nats" || c.broker.natsReplicas != 3 || c.broker.natsPassword != "from-a-secret" || c.security.hmacSecrets == nil {
					t.Errorf("the JetStream example: broker %s, %d replicas, HS256 key files %v", c.broker.kind, c.broker.natsReplicas, c.security.hmacSecrets)
				}
			case "redis-3.yaml":
				if c.broker.kind != "redis" || c.broker.redisPass != "from-a-secret" || c.broker.startTimeout != 5*time.Minute || c.security.jwksURL == "" {
					t.Errorf("the Redis example: broker %s, start timeout %v, JWKS URL %q", c.broker.kind, c.broker.startTimeout, c.security.jwksURL)
				}
			}
		})
	}
}
