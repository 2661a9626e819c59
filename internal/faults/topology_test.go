//go:build faults && linux

package faults

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/broker/outagetest"
	"github.com/heraldhq/herald/internal/poll"
	"github.com/heraldhq/herald/internal/schema"
	"github.com/heraldhq/herald/internal/schema/schematest"
)

// brokerTimeout is the nodes' --broker-timeout: a publish the broker does
// not answer fails with UNAVAILABLE after it.
const brokerTimeout = time.Second

// proc is a process running in a host's namespace.
type proc struct {
	name   string
	cmd    *exec.Cmd
	logs   *outagetest.Log
	exited chan struct{}
}

// start runs bin with args in h's namespace; the test's cleanup kills it.
func start(t *testing.T, h host, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, logs: &outagetest.Log{}, exited: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns(h), bin}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			all := p.logs.String()
			lines := strings.Split(strings.TrimSpace(all), "\n")
			t.Logf("%s's last log lines:\n%s", p.name, strings.Join(lines[max(0, len(lines)-12):], "\n"))
			// Keep the whole log beside the history for a closer look.
			if f, err := os.CreateTemp("", "herald-faults-"+p.name+"-*.log"); err == nil {
				_, _ = f.WriteString(all)
				f.Close()
				t.Logf("%s's whole log is in %s", p.name, f.Name())
			}
		}
	})
	return p
}

// kill ends the process (waking it first if it was stopped) and waits.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	<-p.exited
}

func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
}

// natsCluster is three nats-server processes forming one JetStream cluster.
type natsCluster struct {
	args  [][]string // each server's flags
	procs []*proc
	urls  []string
	dirs  []string // their stores
}

// startNATS starts the cluster with each server's store in a directory of
// dirs (fresh temporary directories when nil) and waits until JetStream has
// a meta leader. Each server takes the whole of 1 GiB for its store, so
// that a smaller file system under it fills up before JetStream's own
// limit is reached.
func startNATS(t *testing.T, dirs []string) *natsCluster {
	t.Helper()
	c := &natsCluster{dirs: dirs}
	conf := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(conf, []byte("jetstream { max_file_store: 1GB, max_memory_store: 64MB }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var routes []string
	for _, h := range natsHost {
		routes = append(routes, "nats://"+h.ip+":6222")
	}
	for i, h := range natsHost {
		if c.dirs == nil || len(c.dirs) <= i {
			c.dirs = append(c.dirs, t.TempDir())
		}
		c.args = append(c.args, []string{"-c", conf, "--server_name", h.name, "-a", h.ip, "-p", "4222", "--http_port", "8222",
			"-js", "-sd", c.dirs[i], "--cluster_name", "herald-faults",
			"--cluster", "nats://" + h.ip + ":6222", "--routes", strings.Join(routes, ","),
			// Clients keep to the URLs they were given (fault 7 gives one
			// node proxies'), rather than learning the servers' own.
			"--no_advertise=true"})
		c.procs = append(c.procs, start(t, h, "nats-"+h.name, binary("nats-server"), c.args[i]...))
		c.urls = append(c.urls, "nats://"+h.ip+":4222")
	}
	nc := c.connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 30*time.Second, "the JetStream cluster to elect a meta leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err == nil
	})
	return c
}

// restart stops server i with SIGTERM and starts it again on the same
// store.
func (c *natsCluster) restart(t *testing.T, i int) {
	t.Helper()
	c.procs[i].signal(t, syscall.SIGTERM)
	<-c.procs[i].exited
	c.procs[i] = start(t, natsHost[i], "nats-"+natsHost[i].name, binary("nats-server"), c.args[i]...)
}

// connect returns a NATS connection to the cluster, closed at cleanup.
func (c *natsCluster) connect(t *testing.T) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(strings.Join(c.urls, ","), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// startRedis starts redis-server without persistence: killed, it comes
// back empty.
func startRedis(t *testing.T) *proc {
	t.Helper()
	p := start(t, redisHost, "redis", "redis-server", "--bind", redisHost.ip, "--port", "6379",
		"--save", "", "--appendonly", "no", "--protected-mode", "no", "--dir", t.TempDir())
	poll.Until(t, 10*time.Second, "redis-server to listen", func() bool { return p.logs.Count("Ready to accept connections") > 0 })
	return p
}

// heraldNode is one `herald serve` process and a gRPC client for it.
type heraldNode struct {
	*proc
	index    int
	host     host
	bin      string
	args     []string
	httpURL  string // http://ip:8080
	grpcAddr string
	client   heraldv1.PublisherServiceClient
}

// cluster is the herald nodes of one test, and what they need.
type cluster struct {
	nodes  []*heraldNode
	token  string // may publish to chat.>
	secret string // the HS256 secret file
	chat   string // the chat.v1 descriptor set
}

// startCluster starts three herald nodes with the backend flags given.
func startCluster(t *testing.T, backend ...string) *cluster {
	t.Helper()
	return startClusterWith(t, binary("herald"), func(int) []string { return backend })
}

// startClusterWith starts three herald nodes of the binary bin, node i
// with the backend flags backend(i).
func startClusterWith(t *testing.T, bin string, backend func(i int) []string) *cluster {
	t.Helper()
	dir := t.TempDir()
	c := &cluster{secret: filepath.Join(dir, "secret"), chat: schematest.WriteSet(t, dir, "chat.binpb", schema.DescriptorSet(chatv1.File_chat_v1_chat_proto))}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if err := os.WriteFile(c.secret, []byte(base64.StdEncoding.EncodeToString(key)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary("herald"), "token", "--key", c.secret, "--publish", "chat.>", "--ttl", "1h").Output()
	if err != nil {
		t.Fatalf("herald token: %v", err)
	}
	c.token = strings.TrimSpace(string(out))
	for i, h := range heraldHost {
		n := &heraldNode{index: i, host: h, bin: bin, httpURL: "http://" + h.ip + ":8080", grpcAddr: h.ip + ":9090"}
		n.args = append([]string{"serve", "--http-addr", h.ip + ":8080", "--grpc-addr", n.grpcAddr,
			"--auth-hs256-secret-file", c.secret, "--public-topics", "chat.>", "--descriptors", c.chat,
			"--log-format", "json", "--heartbeat", "1s", "--broker-timeout", brokerTimeout.String(),
			"--broker-prefix", "faults"}, backend(i)...)
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		n.start(t)
	}
	return c
}

// start starts the node's process (again) and waits until it listens.
func (n *heraldNode) start(t *testing.T) {
	t.Helper()
	n.proc = start(t, n.host, fmt.Sprintf("herald-%s", n.host.name), n.bin, n.args...)
	poll.Until(t, 30*time.Second, n.name+" to listen", func() bool {
		select {
		case <-n.exited:
			t.Fatalf("%s exited:\n%s", n.name, n.logs)
		default:
		}
		return n.logs.Count(`"msg":"herald listening"`) > 0
	})
	if n.client == nil {
		conn, err := grpc.NewClient(n.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		n.client = heraldv1.NewPublisherServiceClient(conn)
	}
}

// logged returns the messages of the node's JSON log lines, in order.
func (n *heraldNode) logged() []string {
	var msgs []string
	sc := bufio.NewScanner(strings.NewReader(n.logs.String()))
	for sc.Scan() {
		var rec struct{ Msg string }
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg != "" {
			msgs = append(msgs, rec.Msg)
		}
	}
	return msgs
}

// iptables runs iptables in h's namespace; the test's cleanup flushes
// the rules it added.
func iptables(t *testing.T, h host, args ...string) {
	t.Helper()
	if err := run(append([]string{"ip", "netns", "exec", ns(h), "iptables"}, args...)...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = run("ip", "netns", "exec", ns(h), "iptables", "-F") })
}

// partition cuts h off from the hosts given, both ways.
func partition(t *testing.T, h host, from ...host) {
	t.Helper()
	var ips []string
	for _, f := range from {
		ips = append(ips, f.ip)
	}
	iptables(t, h, "-A", "OUTPUT", "-d", strings.Join(ips, ","), "-j", "DROP")
	iptables(t, h, "-A", "INPUT", "-s", strings.Join(ips, ","), "-j", "DROP")
}

// isolate cuts h off from every other host.
func isolate(t *testing.T, h host) {
	t.Helper()
	iptables(t, h, "-A", "OUTPUT", "-o", "eth0", "-j", "DROP")
	iptables(t, h, "-A", "INPUT", "-i", "eth0", "-j", "DROP")
}

// heal removes every rule from h's namespace.
func heal(t *testing.T, h host) {
	t.Helper()
	if err := run("ip", "netns", "exec", ns(h), "iptables", "-F"); err != nil {
		t.Fatal(err)
	}
}
