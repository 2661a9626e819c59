package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/heraldhq/herald/cmd/herald-bench/internal/floor"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

// A sink takes the harness's paced events to a server: Herald over a gRPC
// PublishStream, the floor over its ingest connection.
type sink interface {
	// send stamps and sends one event.
	send(topic int, seq uint64) error
	// finish waits (up to timeout) for the server to acknowledge what was
	// sent and reports how many events it refused.
	finish(timeout time.Duration) (refused int64, err error)
	close()
}

type grpcSink struct {
	conn   *grpc.ClientConn
	stream grpc.BidiStreamingClient[heraldv1.PublishRequest, heraldv1.PublishResponse]
	names  []string
	texts  []string // the padding text of each topic's events
	// frames sends each event pre-framed, as its payload's value, to the
	// floor's gRPC ingest (floor.SSEOverGRPC); n numbers them.
	frames bool
	n      uint64

	sent, acked, refused atomic.Int64
	recvErr              error
	recvDone             chan struct{}
}

// dialGRPC connects a publisher to addr. It grants the fixed windows
// Herald's Go client grants, unless --publisher-dynamic-window asks for
// grpc-go's default, which probes the link with a PING for nearly every
// answer Herald sends.
func (b *bench) dialGRPC(addr string) (*grpc.ClientConn, error) {
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if !b.cfg.dynamicWindow {
		opts = append(opts, grpc.WithStaticStreamWindowSize(1<<20), grpc.WithStaticConnWindowSize(4<<20))
	}
	return grpc.NewClient("passthrough:///"+addr, opts...)
}

func (b *bench) newGRPCSink(addr string, names, texts []string) (*grpcSink, error) {
	conn, err := b.dialGRPC(addr)
	if err != nil {
		return nil, err
	}
	stream, err := heraldv1.NewPublisherServiceClient(conn).PublishStream(context.Background())
	if err != nil {
		conn.Close()
		return nil, err
	}
	g := &grpcSink{conn: conn, stream: stream, names: names, texts: texts, recvDone: make(chan struct{})}
	go func() {
		defer close(g.recvDone)
		for {
			resp, err := stream.Recv()
			if err != nil {
				g.recvErr = err
				return
			}
			if resp.GetError() != nil {
				g.refused.Add(1)
			}
			g.acked.Add(1)
		}
	}()
	return g, nil
}

func (g *grpcSink) send(topic int, seq uint64) error {
	var req *heraldv1.PublishRequest
	if g.frames {
		g.n++
		name := g.names[topic]
		frame := appendFrame(nil, g.n, name, seq, time.Now().UnixNano(), g.texts[topic])
		req = &heraldv1.PublishRequest{Topic: name, Payload: &anypb.Any{TypeUrl: "type.googleapis.com/" + eventType, Value: frame}}
	} else {
		var err error
		if req, err = publishRequest(g.names[topic], seq, time.Now().UnixNano(), g.texts[topic]); err != nil {
			return err
		}
	}
	g.sent.Add(1)
	return g.stream.Send(req)
}

func (g *grpcSink) finish(timeout time.Duration) (int64, error) {
	_ = g.stream.CloseSend()
	select {
	case <-g.recvDone:
	case <-time.After(timeout):
		return g.refused.Load(), fmt.Errorf("%d of %d publishes unanswered after %v", g.sent.Load()-g.acked.Load(), g.sent.Load(), timeout)
	}
	if g.acked.Load() != g.sent.Load() {
		return g.refused.Load(), fmt.Errorf("PublishStream ended after %d of %d answers: %v", g.acked.Load(), g.sent.Load(), g.recvErr)
	}
	return g.refused.Load(), nil
}

func (g *grpcSink) close() { g.conn.Close() }

type floorSink struct {
	conn  net.Conn
	bw    *bufio.Writer
	names []string
	texts []string // the padding text of each topic's events
	n     uint64
	frame []byte
	msg   []byte
}

func newFloorSink(addr string, names, texts []string) (*floorSink, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &floorSink{conn: c, bw: bufio.NewWriterSize(c, 64<<10), names: names, texts: texts}, nil
}

func (f *floorSink) send(topic int, seq uint64) error {
	f.n++
	name := f.names[topic]
	f.frame = appendFrame(f.frame[:0], f.n, name, seq, time.Now().UnixNano(), f.texts[topic])
	f.msg = floor.AppendIngest(f.msg[:0], name, f.frame)
	if _, err := f.bw.Write(f.msg); err != nil {
		return err
	}
	return f.bw.Flush()
}

func (f *floorSink) finish(time.Duration) (int64, error) { return 0, f.bw.Flush() }
func (f *floorSink) close()                              { f.conn.Close() }

// pace sends rate events per second, round-robin over the topics, from now
// until stop. It checks the schedule every tick and sends what is due, so
// the rate holds even when a tick comes late. It returns the last seq sent
// on each topic.
func pace(ctx context.Context, s sink, rate float64, topics int, stop time.Time, tick time.Duration) ([]uint64, error) {
	seqs := make([]uint64, topics)
	start := time.Now()
	t := time.NewTicker(tick)
	defer t.Stop()
	var sent int64
	for {
		now := time.Now()
		if !now.Before(stop) {
			return seqs, nil
		}
		due := int64(rate * now.Sub(start).Seconds())
		for ; sent < due; sent++ {
			topic := int(sent % int64(topics))
			seqs[topic]++
			if err := s.send(topic, seqs[topic]); err != nil {
				return seqs, err
			}
		}
		select {
		case <-ctx.Done():
			return seqs, ctx.Err()
		case <-t.C:
		}
	}
}

// A flood publishes as fast as the server answers, for scenario 5, and
// counts answers; the harness reads the count at the window's edges.
type flood struct {
	answered atomic.Int64
	sent     atomic.Int64 // stream requests sent; the last seq when stamped
	refused  atomic.Int64
	errs     atomic.Int64
	mu       sync.Mutex
	lat      []int64 // unary call latencies in the window, ns
	stop     chan struct{}
	wg       sync.WaitGroup
}

// countAnswers reads stream's answers until it ends, counting them and
// freeing a slot of sem for each; the channel it returns closes then.
func (f *flood) countAnswers(stream grpc.BidiStreamingClient[heraldv1.PublishRequest, heraldv1.PublishResponse], sem <-chan struct{}) <-chan struct{} {
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		for {
			resp, err := stream.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					f.errs.Add(1)
				}
				return
			}
			if resp.GetError() != nil {
				f.refused.Add(1)
			}
			f.answered.Add(1)
			<-sem
		}
	}()
	return recvDone
}

// floodUnary runs callers goroutines that call Publish back to back.
func floodUnary(conn *grpc.ClientConn, callers int, topic, text string, win *window) *flood {
	f := &flood{stop: make(chan struct{})}
	client := heraldv1.NewPublisherServiceClient(conn)
	for i := range callers {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			var lat []int64
			defer func() { f.mu.Lock(); f.lat = append(f.lat, lat...); f.mu.Unlock() }()
			req, err := publishRequest(topic, uint64(i), 0, text)
			if err != nil {
				f.errs.Add(1)
				return
			}
			for {
				select {
				case <-f.stop:
					return
				default:
				}
				t0 := time.Now().UnixNano()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := client.Publish(ctx, req)
				cancel()
				t1 := time.Now().UnixNano()
				if err != nil {
					f.errs.Add(1)
					continue
				}
				f.answered.Add(1)
				if win.has(t0) {
					lat = append(lat, t1-t0)
				}
			}
		}()
	}
	return f
}

// floodStream sends on one PublishStream as fast as answers come back,
// with up to inflight requests unanswered. With stamped set, every event
// carries a fresh seq and stamp (for subscribers to check); otherwise one
// request is sent over and over, so the harness costs as little as it can.
func floodStream(conn *grpc.ClientConn, topic, text string, inflight int, stamped bool) (*flood, error) {
	stream, err := heraldv1.NewPublisherServiceClient(conn).PublishStream(context.Background())
	if err != nil {
		return nil, err
	}
	f := &flood{stop: make(chan struct{})}
	sem := make(chan struct{}, inflight)
	recvDone := f.countAnswers(stream, sem)
	fixed, err := publishRequest(topic, 1, 0, text)
	if err != nil {
		return nil, err
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		defer func() { _ = stream.CloseSend(); <-recvDone }()
		for seq := uint64(1); ; seq++ {
			select {
			case <-f.stop:
				return
			case sem <- struct{}{}:
			}
			req := fixed
			if stamped {
				if req, err = publishRequest(topic, seq, time.Now().UnixNano(), text); err != nil {
					f.errs.Add(1)
					return
				}
			}
			if err := stream.Send(req); err != nil {
				f.errs.Add(1)
				return
			}
			f.sent.Add(1)
		}
	}()
	return f, nil
}

func (f *flood) halt() {
	close(f.stop)
	f.wg.Wait()
}
