package e2e

// The Grafana dashboard and the Prometheus alerting rules of
// deploy/observability, checked against a running server.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
	"gopkg.in/yaml.v3"

	"github.com/heraldhq/herald/bridge"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/broker/jetstream"
	"github.com/heraldhq/herald/internal/broker/jetstream/jstest"
	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/internal/poll"
)

// notHerald are the series a rule may use that Prometheus makes itself.
var notHerald = map[string]bool{"up": true}

// ruleFile is a Prometheus rule file, decoded strictly: a misspelt key
// fails the test as it would fail Prometheus.
type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// TestAlertsAndDashboard: every PromQL expression of the alerting rules and
// of the dashboard parses, and every metric it names is on /metrics of a
// running server (on JetStream) that was exercised a little; each alert
// has a severity, a summary, and a runbook entry in the docs. Then the
// broker goes away, and herald_broker_up, which HeraldBrokerUnavailable
// watches, says so.
func TestAlertsAndDashboard(t *testing.T) {
	js := jstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := jetstream.New(ctx, jetstream.Options{URL: js.URL(), Prefix: "obs", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	srv := heraldtest.Start(t, heraldtest.Options{Config: bridge.Config{Broker: b, MaxConnections: 100}})
	exercise(t, ctx, srv)
	exported, values := scrape(t, srv)

	var exprs []string // with where each comes from
	var where []string

	rules := readRules(t)
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("rule group %q: a group needs a name and rules", g.Name)
		}
		for _, r := range g.Rules {
			if r.Alert == "" || r.Record != "" {
				t.Errorf("rule %q: herald-alerts.yaml holds alerting rules only", r.Alert+r.Record)
				continue
			}
			if alerts[r.Alert] {
				t.Errorf("alert %s: defined twice", r.Alert)
			}
			alerts[r.Alert] = true
			if _, err := model.ParseDuration(r.For); r.For != "" && err != nil {
				t.Errorf("alert %s: for: %v", r.Alert, err)
			}
			if !slices.Contains([]string{"critical", "warning", "info"}, r.Labels["severity"]) {
				t.Errorf("alert %s: severity %q, want critical, warning or info", r.Alert, r.Labels["severity"])
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s: needs a summary and a description", r.Alert)
			}
			if want := "docs/operations.md#" + strings.ToLower(r.Alert); r.Annotations["runbook"] != want {
				t.Errorf("alert %s: runbook %q, want %q", r.Alert, r.Annotations["runbook"], want)
			}
			exprs, where = append(exprs, r.Expr), append(where, "alert "+r.Alert)
		}
	}
	if len(alerts) < 8 {
		t.Errorf("%d alerts; the runbook documents more", len(alerts))
	}
	checkRunbook(t, alerts)

	dashExprs, dashWhere := readDashboard(t)
	exprs, where = append(exprs, dashExprs...), append(where, dashWhere...)

	for i, e := range exprs {
		expr, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaVars.Replace(e))
		if err != nil {
			t.Errorf("%s: %q does not parse: %v", where[i], e, err)
			continue
		}
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				name := vs.Name
				for _, m := range vs.LabelMatchers {
					if m.Name == model.MetricNameLabel {
						name = m.Value
					}
				}
				if !exported[name] && !notHerald[name] {
					t.Errorf("%s: %s is not on /metrics", where[i], name)
				}
			}
			return nil
		})
	}

	// The gauges the availability alerts watch, on the way down.
	if values["herald_ready"] != "1" || values["herald_broker_up"] != "1" || values["herald_max_connections"] != "100" {
		t.Errorf("herald_ready %s, herald_broker_up %s, herald_max_connections %s; want 1, 1 and 100",
			values["herald_ready"], values["herald_broker_up"], values["herald_max_connections"])
	}
	js.Shutdown()
	poll.Until(t, 30*time.Second, "herald_broker_up 0 with the broker down", func() bool {
		_, v := scrape(t, srv)
		return v["herald_broker_up"] == "0"
	})
}

// exercise makes the server count what the rules and dashboard watch: an
// accepted and a refused publish, a delivery, a refused subscription.
func exercise(t *testing.T, ctx context.Context, srv *heraldtest.Server) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v1/events?topic=obs.a", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	pub := heraldv1.NewPublisherServiceClient(srv.Conn)
	payload, _ := anypb.New(&emptypb.Empty{})
	if _, err := pub.Publish(ctx, &heraldv1.PublishRequest{Topic: "obs.a", Payload: payload}); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, &heraldv1.PublishRequest{Topic: "obs..bad", Payload: payload}); err == nil {
		t.Fatal("a publish to an invalid topic was accepted")
	}
	var frame bytes.Buffer
	buf := make([]byte, 512)
	for !strings.Contains(frame.String(), "data:") {
		n, err := resp.Body.Read(buf)
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		frame.Write(buf[:n])
	}
	if refused, err := http.Get(srv.URL + "/v1/events?topic=obs..bad"); err == nil {
		refused.Body.Close()
	}
}

// scrape returns the names of the series on /metrics (a histogram's
// _bucket, _sum and _count among them) and the values of the unlabelled
// ones.
func scrape(t *testing.T, srv *heraldtest.Server) (names map[string]bool, values map[string]string) {
	t.Helper()
	rec := httptest.NewRecorder()
	srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	names, values = map[string]bool{}, map[string]string{}
	for line := range strings.SplitSeq(rec.Body.String(), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		series, value, _ := strings.Cut(line, " ")
		name, _, labelled := strings.Cut(series, "{")
		names[name] = true
		if !labelled {
			values[name] = value
		}
	}
	return names, values
}

func readRules(t *testing.T) ruleFile {
	t.Helper()
	b, err := os.ReadFile("../deploy/observability/herald-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f ruleFile
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("herald-alerts.yaml: %v", err)
	}
	if err := dec.Decode(new(any)); err != io.EOF {
		t.Fatalf("herald-alerts.yaml: more than one document")
	}
	return f
}

// grafanaVars are the dashboard's variables, replaced by what they stand
// for so that its queries parse as PromQL.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$instance", ".*")

// readDashboard returns every query of the dashboard, and the panel each
// belongs to.
func readDashboard(t *testing.T) (exprs, where []string) {
	t.Helper()
	b, err := os.ReadFile("../deploy/observability/herald-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var dash struct {
		UID        string  `json:"uid"`
		Title      string  `json:"title"`
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("herald-dashboard.json: %v", err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Error("herald-dashboard.json: no uid or title")
	}
	graphs := 0
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		graphs++
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs, where = append(exprs, tg.Expr), append(where, fmt.Sprintf("panel %q", p.Title))
		}
	}
	if graphs < 15 {
		t.Errorf("the dashboard has %d panels", graphs)
	}
	labelValues := regexp.MustCompile(`^label_values\((\w+), *\w+\)$`)
	for _, v := range dash.Templating.List {
		if v.Definition == "" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: %q is not label_values(metric, label)", v.Name, v.Definition)
			continue
		}
		exprs, where = append(exprs, m[1]), append(where, "variable "+v.Name)
	}
	return exprs, where
}

// checkRunbook: each alert has a heading of its own name in the Alerts
// runbook (docs/operations.md, or the section kept apart until it joins
// it), and the runbook has no entry for an alert that does not exist.
func checkRunbook(t *testing.T, alerts map[string]bool) {
	t.Helper()
	var doc []byte
	for _, f := range []string{"../docs/operations.md"} {
		b, err := os.ReadFile(f)
		if err == nil {
			doc = append(doc, b...)
		}
	}
	headings := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^### (Herald\w+)$`).FindAllSubmatch(doc, -1) {
		headings[string(m[1])] = true
	}
	for a := range alerts {
		if !headings[a] {
			t.Errorf("alert %s has no runbook entry (### %s) in docs/operations.md", a, a)
		}
	}
	for h := range headings {
		if !alerts[h] {
			t.Errorf("the runbook has an entry for %s, which is no alert", h)
		}
	}
}
