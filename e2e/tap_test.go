package e2e

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// A tap is a TCP proxy in front of a server. It counts connections, can
// cut them all (a network failure) and hold new ones (so that events are
// surely missed), and, for plain HTTP/1.1, records each request's method,
// target and headers: what the client really sent.
type tap struct {
	ln    net.Listener
	sniff bool

	mu       sync.Mutex
	target   string
	conns    map[net.Conn]struct{} // both sides of every proxied connection
	accepted int
	open     int
	gate     chan struct{} // non-nil while held
	reqs     []tapRequest
	closed   bool
	wg       sync.WaitGroup
}

type tapRequest struct {
	Conn   int               `json:"conn"` // 1 for the first connection accepted
	Method string            `json:"method"`
	Target string            `json:"target"`
	Header map[string]string `json:"header"` // lower-case names
}

func newTap(t testing.TB, target string, sniff bool) *tap {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tap{ln: ln, sniff: sniff, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p
}

func (p *tap) addr() string { return p.ln.Addr().String() }

func (p *tap) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.accepted++
		p.open++
		n, gate := p.accepted, p.gate
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.handle(n, c, gate)
	}
}

func (p *tap) handle(n int, c net.Conn, gate chan struct{}) {
	defer p.wg.Done()
	defer func() {
		c.Close()
		p.mu.Lock()
		delete(p.conns, c)
		p.open--
		p.mu.Unlock()
	}()
	if gate != nil {
		<-gate
	}
	p.mu.Lock()
	target := p.target
	p.mu.Unlock()
	s, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	p.mu.Lock()
	if _, ok := p.conns[c]; !ok || p.closed { // dropped while held
		p.mu.Unlock()
		s.Close()
		return
	}
	p.conns[s] = struct{}{}
	p.mu.Unlock()
	defer func() {
		s.Close()
		p.mu.Lock()
		delete(p.conns, s)
		p.mu.Unlock()
	}()

	var src io.Reader = c
	if p.sniff {
		pr, pw := io.Pipe()
		defer pw.Close()
		src = io.TeeReader(c, pw)
		go p.record(n, pr)
	}
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(c, s)
		c.Close()
		close(done)
	}()
	_, _ = io.Copy(s, src)
	s.Close()
	<-done
}

// record parses the requests in a copy of the client's bytes.
func (p *tap) record(n int, r *io.PipeReader) {
	defer func() { _, _ = io.Copy(io.Discard, r) }()
	br := bufio.NewReader(r)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		rec := tapRequest{Conn: n, Method: req.Method, Target: req.RequestURI, Header: map[string]string{}}
		for k, v := range req.Header {
			rec.Header[strings.ToLower(k)] = strings.Join(v, ", ")
		}
		if req.Host != "" {
			rec.Header["host"] = req.Host
		}
		p.mu.Lock()
		p.reqs = append(p.reqs, rec)
		p.mu.Unlock()
		_, _ = io.Copy(io.Discard, req.Body)
	}
}

func (p *tap) retarget(addr string) {
	p.mu.Lock()
	p.target = addr
	p.mu.Unlock()
}

// hold makes new connections wait (accepted, but not forwarded) until
// release.
func (p *tap) hold() {
	p.mu.Lock()
	if p.gate == nil {
		p.gate = make(chan struct{})
	}
	p.mu.Unlock()
}

func (p *tap) release() {
	p.mu.Lock()
	if p.gate != nil {
		close(p.gate)
		p.gate = nil
	}
	p.mu.Unlock()
}

// dropAll closes every connection, both sides.
func (p *tap) dropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

type tapStats struct {
	Accepted int          `json:"accepted"`
	Open     int          `json:"open"`
	Requests []tapRequest `json:"requests"`
}

func (p *tap) stats() tapStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return tapStats{Accepted: p.accepted, Open: p.open, Requests: append([]tapRequest(nil), p.reqs...)}
}

func (p *tap) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.release()
	p.dropAll()
	p.wg.Wait()
}
