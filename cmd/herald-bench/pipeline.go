package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// A pipeSink publishes to the nchan peer with raw POSTs of the event's
// JSON (as appendJSON writes it, the bytes the floor frames) to
// /v1/topics/{topic}/events, pipelined: each of a few keep-alive HTTP/1.1
// connections carries up to pipeDepth requests not yet answered, which
// nginx answers in order. It is to a POST what PublishStream is to
// Publish. One request at a time (the restSink) would cap a topic at one
// publish per round trip, which on a loaded 2-core machine held the
// firehose to a third of its rate while nginx idled; more connections per
// topic would reorder its events.
//
// Each topic goes to one connection, so its events stay in order.
type pipeSink struct {
	names, texts []string
	conns        []*pipeConn
	refused      atomic.Int64
	firstErr     atomic.Pointer[error]
	closeOnce    sync.Once
	wg           sync.WaitGroup
}

// pipeDepth is how many requests a connection may have unanswered.
const pipeDepth = 256

type pipeConn struct {
	nc      net.Conn
	work    chan restPost
	pending chan struct{} // a token per request written and not yet answered
}

func newPipeSink(httpAddr string, names, texts []string) (*pipeSink, error) {
	p := &pipeSink{names: names, texts: texts}
	for range min(restWorkers, len(names)) {
		nc, err := net.DialTimeout("tcp", httpAddr, 10*time.Second)
		if err != nil {
			p.close()
			return nil, err
		}
		c := &pipeConn{nc: nc, work: make(chan restPost, 4096), pending: make(chan struct{}, pipeDepth)}
		p.conns = append(p.conns, c)
		p.wg.Go(func() { p.write(c, httpAddr) })
		p.wg.Go(func() { p.read(c) })
	}
	return p, nil
}

func (p *pipeSink) fail(err error) { p.firstErr.CompareAndSwap(nil, &err) }

func (p *pipeSink) send(topic int, seq uint64) error {
	if err := p.firstErr.Load(); err != nil {
		return *err
	}
	select {
	case p.conns[topic%len(p.conns)].work <- restPost{topic: topic, seq: seq, stamp: time.Now().UnixNano()}:
		return nil
	default:
		return errors.New("pipelined publishing fell more than 4,096 events behind")
	}
}

// write sends c's requests as they come, flushing whenever none waits,
// and at most pipeDepth ahead of the answers.
func (p *pipeSink) write(c *pipeConn, httpAddr string) {
	defer close(c.pending) // the reader stops after the last answer
	bw := bufio.NewWriterSize(c.nc, 64<<10)
	var req, body []byte
	for post := range c.work {
		body = appendJSON(body[:0], p.names[post.topic], post.seq, post.stamp, p.texts[post.topic])
		req = append(req[:0], "POST /v1/topics/"...)
		req = append(req, p.names[post.topic]...)
		req = append(req, "/events HTTP/1.1\r\nHost: "...)
		req = append(req, httpAddr...)
		req = append(req, "\r\nContent-Type: application/json\r\nContent-Length: "...)
		req = strconv.AppendInt(req, int64(len(body)), 10)
		req = append(req, "\r\n\r\n"...)
		req = append(req, body...)
		select {
		case c.pending <- struct{}{}:
		default: // as many unanswered as allowed: send what is buffered and wait
			if err := bw.Flush(); err != nil {
				p.fail(err)
				return
			}
			c.pending <- struct{}{}
		}
		if _, err := bw.Write(req); err != nil {
			p.fail(err)
			return
		}
		if len(c.work) == 0 {
			if err := bw.Flush(); err != nil {
				p.fail(err)
				return
			}
		}
	}
	if err := bw.Flush(); err != nil {
		p.fail(err)
	}
}

// read takes c's answers in order, one per request written; any 2xx is
// an acceptance (nchan answers 201 or 202).
func (p *pipeSink) read(c *pipeConn) {
	br := bufio.NewReaderSize(c.nc, 16<<10)
	for range c.pending {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			p.fail(fmt.Errorf("reading a publish's answer: %w", err))
			c.nc.Close() // the writer may be blocked on a full pipe
			for range c.pending {
			}
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			p.refused.Add(1)
		}
	}
}

func (p *pipeSink) finish(timeout time.Duration) (int64, error) {
	p.closeOnce.Do(func() {
		for _, c := range p.conns {
			close(c.work)
		}
	})
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		return p.refused.Load(), fmt.Errorf("pipelined publishes still unanswered after %v", timeout)
	}
	if err := p.firstErr.Load(); err != nil {
		return p.refused.Load(), *err
	}
	return p.refused.Load(), nil
}

func (p *pipeSink) close() {
	p.closeOnce.Do(func() {
		for _, c := range p.conns {
			close(c.work)
		}
	})
	for _, c := range p.conns {
		c.nc.Close()
	}
}
