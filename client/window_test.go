package client_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"

	"github.com/heraldhq/herald/client"
)

// outgoingFrames reads the HTTP/2 frames a client writes on its one
// connection, as written.
type outgoingFrames struct {
	mu     sync.Mutex
	cond   *sync.Cond
	window uint32 // the client's SETTINGS_INITIAL_WINDOW_SIZE, 0 if unsent
	pings  int    // PINGs the client started, not answers to Herald's
	data   int    // DATA frames: one per published event
	err    error
}

// dialer returns a dialer whose connection copies everything the client
// writes to a frame reader.
func (o *outgoingFrames) dialer() func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		pr, pw := io.Pipe()
		go o.read(pr)
		return &teeConn{Conn: c, w: pw}, nil
	}
}

func (o *outgoingFrames) read(r *io.PipeReader) {
	defer r.Close()
	err := func() error {
		if _, err := io.ReadFull(r, make([]byte, len(http2.ClientPreface))); err != nil {
			return err
		}
		fr := http2.NewFramer(nil, r)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return err
			}
			o.mu.Lock()
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if v, ok := f.Value(http2.SettingInitialWindowSize); ok && !f.IsAck() {
					o.window = v
				}
			case *http2.PingFrame:
				if !f.IsAck() {
					o.pings++
				}
			case *http2.DataFrame:
				o.data++
			}
			o.cond.Broadcast()
			o.mu.Unlock()
		}
	}()
	o.mu.Lock()
	o.err = err
	o.cond.Broadcast()
	o.mu.Unlock()
}

type teeConn struct {
	net.Conn
	w *io.PipeWriter
}

func (c *teeConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	_, _ = c.w.Write(p[:n])
	return n, err
}

func (c *teeConn) Close() error {
	c.w.Close()
	return c.Conn.Close()
}

// TestStreamPublisherStartsNoBandwidthProbes publishes small events one
// at a time and reads what the client writes. With grpc-go's dynamic
// window, the client answers nearly every answer from Herald with a
// bandwidth probe, a PING Herald must read and answer; the client grants
// a fixed 1 MiB window instead and never probes.
func TestStreamPublisherStartsNoBandwidthProbes(t *testing.T) {
	h := startServer(t, serverOpts{})
	out := &outgoingFrames{}
	out.cond = sync.NewCond(&out.mu)
	c := newClient(t, h.addr, client.WithDialOptions(grpc.WithContextDialer(out.dialer())))
	p, err := c.NewStreamPublisher(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	const events = 20
	for i := range events {
		r, err := p.Publish(ctxT(t), "orders.eu", order(fmt.Sprint("o-", i)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Wait(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	// A probe started by an answer is queued before the next event, so
	// once the last event's DATA frame is read, every probe the first
	// events' answers started has been read too.
	out.mu.Lock()
	defer out.mu.Unlock()
	for out.data < events && out.err == nil {
		out.cond.Wait()
	}
	if out.data < events {
		t.Fatalf("read %d DATA frames of %d: %v", out.data, events, out.err)
	}
	if out.window != 1<<20 {
		t.Errorf("the client granted a stream window of %d bytes, want 1 MiB", out.window)
	}
	if out.pings != 0 {
		t.Errorf("the client sent %d PINGs over %d publishes; want none", out.pings, events)
	}
}
