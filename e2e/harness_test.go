package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/heraldhq/herald/bridge"
	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/broker/memory"
	"github.com/heraldhq/herald/internal/demo"
	"github.com/heraldhq/herald/internal/schema"
)

// requireClients turns every "real client not installed" skip into a
// failure. CI sets it (.ci/run), so the browser tests can never silently
// not run there.
var requireClients = os.Getenv("HERALD_REQUIRE_BROWSER") == "1"

// unavailable skips the test, loudly, because a real client (Node, the npm
// packages, Chromium) is missing on this machine; under
// HERALD_REQUIRE_BROWSER=1 it fails instead.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if requireClients {
		t.Fatalf("HERALD_REQUIRE_BROWSER=1 and a real client is missing: %s", msg)
	}
	fmt.Fprintf(os.Stderr, "\n"+
		"!!! ================================================================\n"+
		"!!! SKIPPING %s: %s\n"+
		"!!! Install it (see docs/sse-checklist.md) or CI will run it for you.\n"+
		"!!! ================================================================\n\n", t.Name(), msg)
	t.Skipf("SKIPPED, real client missing: %s", msg)
}

var (
	nodeOnce sync.Once
	nodeErr  error
)

// needNode makes sure node and the pinned npm packages are installed: it
// runs `npm ci` when node_modules is missing or older than the lockfile.
func needNode(t testing.TB) {
	t.Helper()
	nodeOnce.Do(func() { nodeErr = installNodeModules() })
	if nodeErr != nil {
		unavailable(t, "%v", nodeErr)
	}
}

func installNodeModules() error {
	node, err := exec.LookPath("node")
	if err != nil {
		return errors.New("node is not installed (Node.js 20 or newer; Debian: apt-get install nodejs npm)")
	}
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		return fmt.Errorf("node --version: %v", err)
	}
	if major, _ := strconv.Atoi(strings.SplitN(strings.TrimPrefix(strings.TrimSpace(string(out)), "v"), ".", 2)[0]); major < 20 {
		return fmt.Errorf("node %s is too old: the tests need Node.js 20 or newer", strings.TrimSpace(string(out)))
	}
	lock, err := os.Stat("package-lock.json")
	if err != nil {
		return err
	}
	if installed, err := os.Stat(filepath.Join("node_modules", ".package-lock.json")); err == nil && !installed.ModTime().Before(lock.ModTime()) {
		return nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return errors.New("npm is not installed (Debian: apt-get install npm)")
	}
	cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	// playwright-core downloads nothing, but make sure: the tests use the
	// system's Chromium.
	cmd.Env = append(os.Environ(), "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("npm ci in e2e/: %v\n%s", err, out)
	}
	return nil
}

// chromePath returns the Chromium to drive: $CHROME_PATH or Debian's
// /usr/bin/chromium.
func chromePath(t testing.TB) string {
	t.Helper()
	p := os.Getenv("CHROME_PATH")
	if p == "" {
		p = "/usr/bin/chromium"
	}
	if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		unavailable(t, "no Chromium at %s (Debian: apt-get install chromium; or set CHROME_PATH)", p)
	}
	return p
}

// nodeResult is one line of lib/reporter.mjs's output: one node:test test.
type nodeResult struct {
	Name       string  `json:"name"`
	Status     string  `json:"status"` // pass, fail, skip or todo
	Error      string  `json:"error"`
	DurationMS float64 `json:"durationMs"`
}

// runNode runs one node test file with node's test runner, cfg in the
// HERALD_E2E environment variable, and checks that exactly the tests in
// want ran and passed, each as a subtest of t named after it.
func runNode(t *testing.T, file string, cfg any, want []string) {
	t.Helper()
	resultsFile := filepath.Join(t.TempDir(), "results.jsonl")
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "--test", "--test-timeout=90000",
		"--test-reporter=./lib/reporter.mjs", "--test-reporter-destination="+resultsFile,
		"--test-reporter=spec", "--test-reporter-destination=stdout", file)
	cmd.Env = append(os.Environ(), "HERALD_E2E="+string(cfgJSON))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	runErr := cmd.Run()
	t.Logf("node --test %s: %v after %v\n%s", file, runErr, time.Since(start).Round(time.Millisecond), out.String())

	results := map[string]nodeResult{}
	data, err := os.ReadFile(resultsFile)
	if err != nil {
		t.Fatalf("node wrote no results: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		var r nodeResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("reporter line %q: %v", line, err)
		}
		results[r.Name] = r
	}
	wanted := map[string]bool{}
	for _, name := range want {
		wanted[name] = true
		t.Run(name, func(t *testing.T) {
			r, ok := results[name]
			switch {
			case !ok:
				t.Fatalf("node test %q did not run (%s)", name, file)
			case r.Status != "pass":
				t.Fatalf("%s (%s, %.0f ms):\n%s", r.Status, file, r.DurationMS, r.Error)
			}
		})
	}
	for name, r := range results {
		if !wanted[name] {
			t.Errorf("node test %q (%s) is not in the Go test's list: add it", name, r.Status)
		}
	}
	if runErr != nil && !t.Failed() {
		t.Fatalf("node --test %s failed: %v", file, runErr)
	}
}

// A herald is a real Herald server (bridge.Server with the memory broker,
// on 127.0.0.1:0) behind a tap, which clients connect through. It can be
// restarted on the same broker, as in a deploy.
type herald struct {
	t      testing.TB
	name   string
	cfg    bridge.Config
	broker *memory.Broker
	types  *schema.Registry
	tap    *tap
	scheme string
	wrap   func(net.Listener) net.Listener

	mu  sync.Mutex
	cur *instance
}

type instance struct {
	srv      *bridge.Server
	httpAddr string
	client   heraldv1.PublisherServiceClient
	conn     *grpc.ClientConn
	served   chan error
	stopped  bool
}

var (
	typesOnce sync.Once
	types     *schema.Registry
)

func builtinTypes(t testing.TB) *schema.Registry {
	typesOnce.Do(func() {
		var err error
		if types, err = schema.NewBuiltin(demo.Files()...); err != nil {
			panic(err)
		}
	})
	return types
}

// startHerald starts a server with cfg (Broker and Types are filled in)
// and a tap in front of it. Plain-text taps record the HTTP requests.
func startHerald(t testing.TB, name string, cfg bridge.Config, mem memory.Options) *herald {
	t.Helper()
	return startHeraldOn(t, name, cfg, mem, nil)
}

// startHeraldOn is startHerald with the server's HTTP listener wrapped by
// wrap (when not nil).
func startHeraldOn(t testing.TB, name string, cfg bridge.Config, mem memory.Options, wrap func(net.Listener) net.Listener) *herald {
	t.Helper()
	h := &herald{t: t, name: name, cfg: cfg, broker: memory.New(mem), types: builtinTypes(t), scheme: "http", wrap: wrap}
	t.Cleanup(func() { h.broker.Close() })
	h.cfg.Broker, h.cfg.Types = h.broker, h.types
	if h.cfg.TLS != nil {
		h.scheme = "https"
	}
	inst, err := h.start()
	if err != nil {
		t.Fatal(err)
	}
	h.cur = inst
	h.tap = newTap(t, inst.httpAddr, h.cfg.TLS == nil)
	t.Cleanup(func() {
		h.mu.Lock()
		inst := h.cur
		h.mu.Unlock()
		h.tap.close()
		if err := h.stop(inst); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	})
	return h
}

func (h *herald) start() (*instance, error) {
	srv, err := bridge.New(h.cfg)
	if err != nil {
		return nil, err
	}
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	grpcLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		httpLn.Close()
		return nil, err
	}
	if h.wrap != nil {
		httpLn = h.wrap(httpLn)
	}
	inst := &instance{srv: srv, httpAddr: httpLn.Addr().String(), served: make(chan error, 1)}
	go func() { inst.served <- srv.Serve(httpLn, grpcLn) }()
	inst.conn, err = grpc.NewClient(grpcLn.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	inst.client = heraldv1.NewPublisherServiceClient(inst.conn)
	return inst, nil
}

func (h *herald) stop(inst *instance) error {
	if inst.stopped {
		return nil
	}
	inst.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := inst.srv.Shutdown(ctx)
	if serr := <-inst.served; err == nil {
		err = serr
	}
	inst.conn.Close()
	return err
}

// url is what clients use: the tap's address.
func (h *herald) url() string { return h.scheme + "://" + h.tap.addr() }

// direct is the server's own address, bypassing the tap.
func (h *herald) direct() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.scheme + "://" + h.cur.httpAddr
}

func (h *herald) client() heraldv1.PublisherServiceClient {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cur.client
}

// restart starts a new server on the same broker, points the tap at it and
// shuts the old one down, as a rolling deploy does. While the old server's
// clients are cut, before any of them reconnects, it runs during (which
// publishes what they will have missed).
func (h *herald) restart(during func() error) error {
	next, err := h.start()
	if err != nil {
		return err
	}
	h.mu.Lock()
	old := h.cur
	h.cur = next
	h.mu.Unlock()
	h.tap.hold()
	defer h.tap.release()
	h.tap.retarget(next.httpAddr)
	// The old server tells its clients to reconnect and closes every
	// connection; the tap passes the closes on.
	if err := h.stop(old); err != nil {
		return err
	}
	return during()
}

// outage cuts every client connection, as a network failure would, and
// runs during before any client can reconnect.
func (h *herald) outage(during func() error) error {
	h.tap.hold()
	defer h.tap.release()
	h.tap.dropAll()
	return during()
}

func (h *herald) publish(ctx context.Context, req *heraldv1.PublishRequest) (string, error) {
	resp, err := h.client().Publish(ctx, req)
	return resp.GetId(), err
}

// publishStream publishes reqs over one PublishStream, as a high-rate
// producer would, and returns the ids in order.
func (h *herald) publishStream(ctx context.Context, reqs []*heraldv1.PublishRequest) ([]string, error) {
	ps, err := h.client().PublishStream(ctx)
	if err != nil {
		return nil, err
	}
	errc := make(chan error, 1)
	go func() {
		for _, r := range reqs {
			if err := ps.Send(r); err != nil {
				errc <- err
				return
			}
		}
		errc <- ps.CloseSend()
	}()
	ids := make([]string, 0, len(reqs))
	for range reqs {
		resp, err := ps.Recv()
		if err != nil {
			return nil, err
		}
		if e := resp.GetError(); e != nil {
			return nil, fmt.Errorf("event %d refused: %s", len(ids), e.GetMessage())
		}
		ids = append(ids, resp.GetId())
	}
	return ids, <-errc
}

// publishNearLimit publishes a chat message to room "big" whose event is
// exactly the size limit: text is unit repeated, padded with "x". One more
// byte must be refused with INVALID_ARGUMENT: overErr is that refusal.
func (h *herald) publishNearLimit(ctx context.Context, topic, unit string) (id, text string, overErr, err error) {
	limit := h.cfg.MaxEventBytes
	if limit == 0 {
		limit = bridge.DefaultMaxEventBytes
	}
	if unit == "" {
		unit = "x"
	}
	msg := func(text string) *heraldv1.PublishRequest {
		payload, _ := anypb.New(&chatv1.ChatMessage{Room: "big", Text: text})
		return &heraldv1.PublishRequest{Topic: topic, Payload: payload}
	}
	size := func(text string) int { // as broker.Event.Size counts it
		r := msg(text)
		return len(r.Topic) + len(r.Payload.GetTypeUrl()) + len(r.Payload.GetValue()) + len("chat.v1.ChatMessage")
	}
	text = strings.Repeat(unit, (limit-200)/len(unit))
	for size(text+unit) <= limit {
		text += unit
	}
	for size(text+"x") <= limit {
		text += "x"
	}
	if size(text) != limit {
		return "", "", nil, fmt.Errorf("could not build an event of exactly %d bytes (got %d)", limit, size(text))
	}
	_, overErr = h.publish(ctx, msg(text+"x"))
	if status.Code(overErr) != codes.InvalidArgument || !strings.Contains(status.Convert(overErr).Message(), "over the limit") {
		return "", "", nil, fmt.Errorf("an event of %d bytes, over the limit of %d: err %v, want INVALID_ARGUMENT", size(text+"x"), limit, overErr)
	}
	id, err = h.publish(ctx, msg(text))
	if err != nil {
		return "", "", nil, fmt.Errorf("an event of exactly the limit, %d bytes: %w", limit, err)
	}
	return id, text, overErr, nil
}

// metric returns the value of a Prometheus sample of the current server,
// e.g. `herald_sse_refused_total{status="400"}`; 0 when absent.
func (h *herald) metric(t testing.TB, sample string) float64 {
	t.Helper()
	client := http.DefaultClient
	if h.cfg.TLS != nil {
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	}
	resp, err := client.Get(h.direct() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

func request(t testing.TB, topic string, msg proto.Message) *heraldv1.PublishRequest {
	t.Helper()
	payload, err := anypb.New(msg)
	if err != nil {
		t.Fatal(err)
	}
	return &heraldv1.PublishRequest{Topic: topic, Payload: payload}
}

// serverInfo is what a node test learns about a server.
type serverInfo struct {
	URL           string `json:"url"`    // through the tap
	Direct        string `json:"direct"` // the server itself
	RetryMS       int64  `json:"retryMs"`
	HeartbeatMS   int64  `json:"heartbeatMs"`
	MaxEventBytes int    `json:"maxEventBytes"`
}

func (h *herald) info() serverInfo {
	cfg := h.cfg
	retry, hb, maxBytes := cfg.RetryInterval, cfg.HeartbeatInterval, cfg.MaxEventBytes
	if retry == 0 {
		retry = bridge.DefaultRetryInterval
	}
	if hb == 0 {
		hb = bridge.DefaultHeartbeatInterval
	}
	if maxBytes == 0 {
		maxBytes = bridge.DefaultMaxEventBytes
	}
	return serverInfo{URL: h.url(), Direct: h.direct(), RetryMS: retry.Milliseconds(), HeartbeatMS: hb.Milliseconds(), MaxEventBytes: maxBytes}
}

// selfSigned returns a fresh ECDSA P-256 certificate for 127.0.0.1 and
// localhost, and writes it and its key as PEM files into dir.
func selfSigned(t testing.TB, dir string) (cert tls.Certificate, certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "herald e2e"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return cert, certFile, keyFile, pool
}

// pageServer serves a blank HTML page on its own origin, for cross-origin
// tests.
func pageServer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, "<!doctype html><meta charset=utf-8><title>another origin</title><p>a page on another origin</p>\n")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9._~:-]{1,128}$`)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
