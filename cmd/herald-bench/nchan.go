package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/heraldhq/herald/internal/poll"
)

// nchan is an optional peer of scenarios 1-4: nginx with the nchan pub/sub
// module, the server a team that wants SSE fan-out without writing one is
// likely to reach for. It runs from Debian's packages (apt-get install
// nginx libnginx-mod-nchan) with a configuration the harness writes, and
// is skipped when either is missing. The harness publishes to it with
// pipelined raw POSTs (pipeSink).

// nchanModule is where Debian's libnginx-mod-nchan installs the module.
const nchanModule = "/usr/lib/nginx/modules/ngx_nchan_module.so"

// findNchan returns the nginx binary that can run the nchan peer, or why
// there is none. Debian puts nginx in /usr/sbin, which a user's PATH may
// lack.
func findNchan() (string, error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			return "", errors.New("no nginx in PATH or /usr/sbin (apt-get install nginx libnginx-mod-nchan)")
		}
		bin = "/usr/sbin/nginx"
	}
	if _, err := os.Stat(nchanModule); err != nil {
		return "", fmt.Errorf("no nchan module at %s (apt-get install libnginx-mod-nchan)", nchanModule)
	}
	return bin, nil
}

// nchanConf is the configuration of the nchan peer. It serves Herald's
// paths, so that the harness's SSE client needs nothing of its own for it:
//
//	GET  /v1/events?topic=T        an EventSource subscription to channel T
//	POST /v1/topics/T/events       publishes the body, as it is, to channel T
//
// Each setting is there to make nchan do the work Herald does, no more:
var nchanConf = template.Must(template.New("nginx.conf").Parse(`
load_module {{.Module}};

# One process, no master: the harness reads its CPU and memory from one
# /proc/<pid>, as it does for Herald, and the issue measured nchan so.
daemon off;
master_process off;
pid {{.Dir}}/nginx.pid;
# Enough descriptors and connection slots for the scenario's subscribers,
# the publisher's connections and some slack; sized to the scenario, as
# nginx allocates (and touches) every slot at start.
worker_rlimit_nofile {{.Files}};
error_log stderr warn;
events {
	worker_connections {{.Conns}};
}

http {
	access_log off;
	# Nothing of the system's nginx: temporary files stay in the run's
	# directory (a 256-byte body never reaches them).
	client_body_temp_path {{.Dir}}/body;
	proxy_temp_path {{.Dir}}/proxy;
	fastcgi_temp_path {{.Dir}}/fastcgi;
	uwsgi_temp_path {{.Dir}}/uwsgi;
	scgi_temp_path {{.Dir}}/scgi;
	# The publisher keeps its connections for the run, as it keeps its
	# PublishStream to Herald; nginx would close each after 1,000 requests.
	keepalive_requests 1000000000;

	server {
		listen {{.Addr}} backlog=4096;

		location = /v1/events {
			nchan_subscriber eventsource;
			nchan_channel_id $arg_topic;
			# A new subscriber gets what is published from now on, as a
			# Herald subscriber without Last-Event-ID does.
			nchan_subscriber_first_message newest;
			# Heartbeats as Herald's: a comment line every --heartbeat
			# (not an event, which the client would not count as one).
			nchan_eventsource_ping_interval {{.Heartbeat}};
			nchan_eventsource_ping_comment "";
			nchan_eventsource_ping_event "";
		}

		location ~ ^/v1/topics/([^/]+)/events$ {
			nchan_publisher;
			nchan_channel_id $1;
			# Retention as Herald's defaults (--retention-events 1000,
			# --retention-age 1h): both keep what a reconnecting client
			# may resume from.
			nchan_message_buffer_length 1000;
			nchan_message_timeout 1h;
		}
	}
}
`))

// startNchan runs nginx with the nchan peer's configuration on a free
// loopback port, sized for conns subscribers, and waits until it accepts
// connections. Its log (nginx's error log and anything else it writes)
// goes to the scenario's log file.
func (b *bench) startNchan(scenario string, conns int) (*server, error) {
	bin, err := findNchan()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(b.dir, scenario+"-nchan")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(b.dir, scenario+"-nchan.log")
	// The port is found free and then handed to nginx, which another
	// process may take in between: try a few.
	for attempt := 1; ; attempt++ {
		s, err := startNginx(bin, dir, logPath, conns, b.cfg.heartbeat)
		if err == nil || attempt == 3 {
			return s, err
		}
	}
}

func startNginx(bin, dir, logPath string, conns int, heartbeat time.Duration) (*server, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	slots := conns + 1024 // the publisher's connections, the harness's probes
	var conf strings.Builder
	err = nchanConf.Execute(&conf, map[string]any{
		"Module": nchanModule, "Dir": dir, "Addr": addr, "Conns": slots, "Files": slots + 64,
		"Heartbeat": max(int(heartbeat.Round(time.Second).Seconds()), 1),
	})
	if err != nil {
		return nil, err
	}
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy
	// -e: the error log before the configuration is read, which would
	// otherwise be the system's.
	cmd := exec.Command(bin, "-p", dir, "-c", confPath, "-e", "stderr")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	// SIGKILL ends it: Debian's nchan 1.3.6 aborts with a double free when
	// a single nginx process exits on SIGTERM or SIGQUIT, and with the
	// harness's streams closed it has nothing left to finish.
	s := &server{kind: "nchan", cmd: cmd, pid: cmd.Process.Pid, http: addr, exited: make(chan struct{}), stopSignal: syscall.SIGKILL}
	go func() { _ = cmd.Wait(); close(s.exited) }()
	err = poll.Wait(10*time.Second, "nginx to accept connections on "+addr, func() bool {
		if !s.alive() {
			return true
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if err == nil && !s.alive() {
		err = fmt.Errorf("nginx exited at start; see %s", logPath)
	}
	if err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// freePort returns a loopback address no one listens on, for a server
// that cannot listen on port 0 and tell which port it got.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// findPeers parses --peers and returns the peers that can run, and for
// each that cannot, a note saying why it is skipped.
func findPeers(list string) (peers, skipped []string, err error) {
	for name := range strings.SplitSeq(list, ",") {
		switch name = strings.TrimSpace(name); name {
		case "":
		case "nchan":
			if slices.Contains(peers, name) {
				continue
			}
			if _, err := findNchan(); err != nil {
				skipped = append(skipped, "nchan skipped: "+err.Error())
				continue
			}
			peers = append(peers, name)
		default:
			return nil, nil, fmt.Errorf("--peers: unknown peer %q (known: nchan)", name)
		}
	}
	return peers, skipped, nil
}
