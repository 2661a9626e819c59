package deploy

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

const chart = "helm/herald"

// helm runs the helm pinned in tools/go.mod.
func helm(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"tool", "-modfile=../tools/go.mod", "helm"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out)
}

// rendered is what helm template made of the chart, each manifest decoded
// strictly into its Kubernetes API type.
type rendered struct {
	deployment *appsv1.Deployment
	service    *corev1.Service
	configMap  *corev1.ConfigMap
	ingress    *networkingv1.Ingress
	pdb        *policyv1.PodDisruptionBudget
}

// render runs helm lint and helm template with the values files, and
// decodes every manifest into its type, refusing unknown fields, so that
// a misspelt field fails here rather than in a cluster.
func render(t *testing.T, values ...string) rendered {
	t.Helper()
	var flags []string
	for _, v := range values {
		flags = append(flags, "--values", v)
	}
	helm(t, append([]string{"lint", "--strict", chart}, flags...)...)
	out := helm(t, append([]string{"template", "herald", chart}, flags...)...)
	var r rendered
	for doc := range strings.SplitSeq(out, "\n---\n") {
		if strings.TrimSpace(strings.TrimPrefix(doc, "---")) == "" {
			continue
		}
		var head struct{ APIVersion, Kind string }
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("a manifest is not YAML: %v\n%s", err, doc)
		}
		var obj any
		switch head.APIVersion + " " + head.Kind {
		case "apps/v1 Deployment":
			r.deployment = new(appsv1.Deployment)
			obj = r.deployment
		case "v1 Service":
			r.service = new(corev1.Service)
			obj = r.service
		case "v1 ConfigMap":
			r.configMap = new(corev1.ConfigMap)
			obj = r.configMap
		case "networking.k8s.io/v1 Ingress":
			r.ingress = new(networkingv1.Ingress)
			obj = r.ingress
		case "policy/v1 PodDisruptionBudget":
			r.pdb = new(policyv1.PodDisruptionBudget)
			obj = r.pdb
		default:
			t.Fatalf("the chart renders a %s %s, which this test does not know", head.APIVersion, head.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Fatalf("%s: %v\n%s", head.Kind, err, doc)
		}
	}
	if r.deployment == nil || r.service == nil || r.configMap == nil {
		t.Fatalf("the chart rendered no Deployment, Service or ConfigMap:\n%s", out)
	}
	return r
}

// TestHelmChart renders the chart with the default values and with the
// 3-node JetStream example, and checks what a cluster would run.
func TestHelmChart(t *testing.T) {
	for _, tc := range []struct {
		name     string
		values   []string
		replicas int32
		broker   string
		ingress  bool
	}{
		{"defaults", nil, 1, "memory", false},
		{"jetstream-3", []string{filepath.Join(chart, "ci/jetstream-3.yaml")}, 3, "nats", true},
		{"redis-3", []string{filepath.Join(chart, "ci/redis-3.yaml")}, 3, "redis", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, tc.values...)
			checkDeployment(t, r, tc.replicas)
			var settings map[string]any
			if err := yaml.UnmarshalStrict([]byte(r.configMap.Data["herald.yaml"]), &settings); err != nil {
				t.Fatalf("the ConfigMap's herald.yaml: %v", err)
			}
			if settings["broker"] != tc.broker {
				t.Errorf("broker %v, want %s", settings["broker"], tc.broker)
			}
			shutdown, err := time.ParseDuration(fmt.Sprint(settings["shutdown-timeout"]))
			if err != nil {
				t.Fatalf("shutdown-timeout: %v", err)
			}
			spec := r.deployment.Spec.Template.Spec
			c := spec.Containers[0]
			preStop := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
			if grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second; grace <= preStop+shutdown {
				t.Errorf("terminationGracePeriodSeconds %v does not exceed the preStop sleep %v plus --shutdown-timeout %v", grace, preStop, shutdown)
			}
			checkService(t, r.service)
			if r.pdb == nil || r.pdb.Spec.MaxUnavailable == nil || r.pdb.Spec.MaxUnavailable.IntValue() != 1 {
				t.Errorf("PodDisruptionBudget: %+v, want maxUnavailable 1", r.pdb)
			}
			if (r.ingress != nil) != tc.ingress {
				t.Fatalf("Ingress rendered: %v, want %v", r.ingress != nil, tc.ingress)
			}
			if tc.ingress {
				a := r.ingress.Annotations
				if a["nginx.ingress.kubernetes.io/proxy-buffering"] != "off" || a["nginx.ingress.kubernetes.io/proxy-read-timeout"] != "3600" {
					t.Errorf("Ingress annotations %v: want proxy-buffering off and a 3600 s read timeout for SSE", a)
				}
			}
			switch tc.broker {
			case "nats":
				checkSecrets(t, r, settings)
			case "redis":
				checkPasswordEnv(t, r, "HERALD_REDIS_PASSWORD", "herald-redis")
			}
		})
	}
}

func checkDeployment(t *testing.T, r rendered, replicas int32) {
	t.Helper()
	d := r.deployment
	if d.Spec.Replicas == nil || *d.Spec.Replicas != replicas {
		t.Errorf("replicas %v, want %d", d.Spec.Replicas, replicas)
	}
	spec := d.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	if !slices.Equal(c.Args, []string{"serve", "--config", "/etc/herald/herald.yaml"}) {
		t.Errorf("args %q", c.Args)
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		for _, v := range spec.Volumes {
			if v.Name == m.Name && m.MountPath == "/etc/herald" && v.ConfigMap != nil && v.ConfigMap.Name == r.configMap.Name {
				mounted = true
			}
		}
	}
	if !mounted {
		t.Error("the ConfigMap is not mounted at /etc/herald")
	}
	for probe, want := range map[*corev1.Probe]string{c.LivenessProbe: "/healthz", c.ReadinessProbe: "/readyz"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != want || probe.HTTPGet.Port.String() != "http" {
			t.Errorf("probe %+v, want GET %s on the http port", probe, want)
		}
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["http"] != 8080 || ports["grpc"] != 9090 {
		t.Errorf("container ports %v, want http 8080 and grpc 9090", ports)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds <= 0 {
		t.Fatalf("no preStop sleep: %+v", c.Lifecycle)
	}
	if spec.TerminationGracePeriodSeconds == nil {
		t.Fatal("no terminationGracePeriodSeconds")
	}
	psc, sc := spec.SecurityContext, c.SecurityContext
	switch {
	case psc == nil || sc == nil:
		t.Fatal("no security context")
	case psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0:
		t.Errorf("pod security context %+v: want runAsNonRoot and a non-zero runAsUser", psc)
	case psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("seccomp profile %+v, want RuntimeDefault", psc.SeccompProfile)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("the root filesystem is writable")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("privilege escalation allowed")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Errorf("capabilities %+v, want all dropped", sc.Capabilities)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Errorf("resource requests %v, want CPU and memory", c.Resources.Requests)
	}
}

func checkService(t *testing.T, s *corev1.Service) {
	t.Helper()
	ports := map[string]string{}
	for _, p := range s.Spec.Ports {
		ports[p.Name] = fmt.Sprintf("%d->%s", p.Port, p.TargetPort.String())
	}
	if ports["http"] != "8080->http" || ports["grpc"] != "9090->grpc" {
		t.Errorf("Service ports %v, want http 8080 and grpc 9090 to the container's named ports", ports)
	}
}

// checkSecrets: the HS256 key comes from its Secret as the file the config
// names, and the NATS password from its Secret as HERALD_NATS_PASSWORD.
func checkSecrets(t *testing.T, r rendered, settings map[string]any) {
	t.Helper()
	spec := r.deployment.Spec.Template.Spec
	c := spec.Containers[0]
	keyFile := fmt.Sprint(settings["auth-hs256-secret-file"])
	found := false
	for _, m := range c.VolumeMounts {
		for _, v := range spec.Volumes {
			if v.Name != m.Name || v.Secret == nil || v.Secret.SecretName != "herald-auth" {
				continue
			}
			for _, item := range v.Secret.Items {
				if item.Key == "hs256.key" && filepath.Join(m.MountPath, item.Path) == keyFile {
					found = true
				}
			}
		}
	}
	if !found {
		t.Errorf("auth-hs256-secret-file %s is not the herald-auth Secret's hs256.key", keyFile)
	}
	checkPasswordEnv(t, r, "HERALD_NATS_PASSWORD", "herald-nats")
}

// checkPasswordEnv: the variable comes from the Secret.
func checkPasswordEnv(t *testing.T, r rendered, name, secret string) {
	t.Helper()
	for _, e := range r.deployment.Spec.Template.Spec.Containers[0].Env {
		if e.Name == name && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == secret {
			return
		}
	}
	t.Errorf("no %s from the %s Secret: %+v", name, secret, r.deployment.Spec.Template.Spec.Containers[0].Env)
}

// TestHelmChartRefusesBadValues: values the chart cannot honour fail
// helm template with a message naming them.
func TestHelmChartRefusesBadValues(t *testing.T) {
	for _, tc := range []struct {
		set, want string
	}{
		{"broker.kind=kafka", `broker.kind is "kafka"; want memory, nats or redis`},
		{"replicaCount=3", "broker.kind memory keeps each pod's history apart"},
		{"config.shutdown-timeout=1m", "config.shutdown-timeout: the chart sets it"},
	} {
		cmd := exec.Command("go", "tool", "-modfile=../tools/go.mod", "helm", "template", "herald", chart, "--set", tc.set)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("helm template --set %s: %v, want an error saying %q\n%s", tc.set, err, tc.want, out)
		}
	}
}

// TestOperationsDocPrintsTheExample: the 3-node JetStream values that
// docs/operations.md prints are the file the tests render.
func TestOperationsDocPrintsTheExample(t *testing.T) {
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(doc), "```yaml\n")
	block, _, _ = strings.Cut(block, "```")
	if !ok {
		t.Fatal("docs/operations.md prints no yaml block")
	}
	raw, err := os.ReadFile(filepath.Join(chart, "ci/jetstream-3.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values []string
	for line := range strings.SplitSeq(string(raw), "\n") {
		if !strings.HasPrefix(line, "#") {
			values = append(values, line)
		}
	}
	if want := strings.Join(values, "\n"); block != want {
		t.Errorf("docs/operations.md prints\n%s\nbut %s/ci/jetstream-3.yaml holds\n%s", block, chart, want)
	}
}
