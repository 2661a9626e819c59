package client_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/bridge"
	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/internal/broker/memory"
	"github.com/heraldhq/herald/internal/demo"
	"github.com/heraldhq/herald/internal/schema"
)

// herald is a real Herald server on 127.0.0.1:0 with the memory broker.
type herald struct {
	*bridge.Server
	addr   string // gRPC
	url    string // HTTP
	broker *memory.Broker
}

// serve starts a Herald server for the caller's lifetime and returns a
// function that shuts it down and waits for Serve to return.
func serve(cfg bridge.Config, mem memory.Options) (*herald, func() error, error) {
	types, err := schema.NewBuiltin(demo.Files()...)
	if err != nil {
		return nil, nil, err
	}
	b := memory.New(mem)
	cfg.Broker, cfg.Types = b, types
	srv, err := bridge.New(cfg)
	if err != nil {
		b.Close()
		return nil, nil, err
	}
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Close()
		return nil, nil, err
	}
	grpcLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		httpLn.Close()
		b.Close()
		return nil, nil, err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(httpLn, grpcLn) }()
	stop := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := srv.Shutdown(ctx)
		if serr := <-served; err == nil {
			err = serr
		}
		b.Close()
		return err
	}
	return &herald{Server: srv, addr: grpcLn.Addr().String(), url: "http://" + httpLn.Addr().String(), broker: b}, stop, nil
}

type serverOpts struct {
	cfg    bridge.Config
	memory memory.Options
}

func startServer(t testing.TB, opts serverOpts) *herald {
	t.Helper()
	h, stop, err := serve(opts.cfg, opts.memory)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return h
}

func newClient(t testing.TB, target string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(target, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// proxy forwards TCP connections to a target until severed: sever closes
// every open connection at once, mid-stream, as a network failure would;
// new connections are forwarded again. holdReplies stops forwarding what
// the target sends, as a link dying one way first would.
type proxy struct {
	addr   string
	target string
	ln     net.Listener

	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	accepted int
	hold     chan struct{} // non-nil while replies are held; closed to release
}

func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: ln.Addr().String(), target: target, ln: ln, conns: make(map[net.Conn]struct{})}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		p.sever()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				down.Close()
				continue
			}
			p.mu.Lock()
			p.conns[down], p.conns[up] = struct{}{}, struct{}{}
			p.accepted++
			p.mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); p.pipe(up, down, false) }()
			go func() { defer wg.Done(); p.pipe(down, up, true) }()
		}
	}()
	return p
}

func (p *proxy) pipe(dst, src net.Conn, replies bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && replies {
			p.mu.Lock()
			hold := p.hold
			p.mu.Unlock()
			if hold != nil {
				<-hold
			}
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// sever closes every open connection, dropping replies held back.
func (p *proxy) sever() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	if p.hold != nil {
		close(p.hold)
		p.hold = nil
	}
}

// holdReplies stops forwarding data from the target until sever.
func (p *proxy) holdReplies() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hold == nil {
		p.hold = make(chan struct{})
	}
}

// connections returns how many connections the proxy has accepted.
func (p *proxy) connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}
