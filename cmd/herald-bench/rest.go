package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// A restSink publishes over REST: POST /v1/topics/{topic}/events with the
// event as JSON, the way a service without gRPC publishes. Each topic goes
// to one of a few workers, each with its own keep-alive connection, so
// that a topic's events stay in order and a slow answer holds up only its
// worker's topics. With asStruct the payload is a google.protobuf.Struct
// of the same fields rather than the typed message.
type restSink struct {
	httpAddr  string
	names     []string
	texts     []string
	asStruct  bool
	work      []chan restPost
	wg        sync.WaitGroup
	refused   atomic.Int64
	firstErr  atomic.Pointer[error]
	client    *http.Client
	closeOnce sync.Once
}

type restPost struct {
	topic int
	seq   uint64
	stamp int64
}

// restWorkers is how many connections a restSink publishes over.
const restWorkers = 8

func newRESTSink(httpAddr string, names, texts []string, asStruct bool) *restSink {
	r := &restSink{
		httpAddr: httpAddr, names: names, texts: texts, asStruct: asStruct,
		client: &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: restWorkers,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		}, Timeout: 30 * time.Second},
	}
	for range min(restWorkers, len(names)) {
		ch := make(chan restPost, 4096)
		r.work = append(r.work, ch)
		r.wg.Go(func() { r.post(ch) })
	}
	return r
}

func (r *restSink) send(topic int, seq uint64) error {
	if err := r.firstErr.Load(); err != nil {
		return *err
	}
	select {
	case r.work[topic%len(r.work)] <- restPost{topic: topic, seq: seq, stamp: time.Now().UnixNano()}:
		return nil
	default:
		return errors.New("REST publishing fell more than 4,096 events behind")
	}
}

// post publishes what comes on ch, one request after another.
func (r *restSink) post(ch <-chan restPost) {
	var body []byte
	url := make(map[int]string)
	for p := range ch {
		body = r.appendBody(body[:0], p)
		u, ok := url[p.topic]
		if !ok {
			u = "http://" + r.httpAddr + "/v1/topics/" + r.names[p.topic] + "/events"
			url[p.topic] = u
		}
		resp, err := r.client.Post(u, "application/json", bytes.NewReader(body))
		if err != nil {
			r.firstErr.CompareAndSwap(nil, &err)
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			r.refused.Add(1)
		}
	}
}

// appendBody appends the request body of p: the event Herald renders (see
// appendJSON) as the payload, typed or as a Struct.
func (r *restSink) appendBody(dst []byte, p restPost) []byte {
	topic := r.names[p.topic]
	if r.asStruct {
		dst = append(dst, `{"payload":{"@type":"type.googleapis.com/google.protobuf.Struct","value":`...)
	} else {
		dst = append(dst, `{"payload":{"@type":"type.googleapis.com/`+eventType+`",`...)
	}
	start := len(dst)
	dst = appendJSON(dst, topic, p.seq, p.stamp, r.texts[p.topic])
	if !r.asStruct {
		// The typed form is the message's fields inside the Any object:
		// drop appendJSON's opening brace.
		dst = append(dst[:start], dst[start+1:]...)
		return append(dst, '}')
	}
	return append(dst, "}}"...)
}

func (r *restSink) finish(timeout time.Duration) (int64, error) {
	r.closeOnce.Do(func() {
		for _, ch := range r.work {
			close(ch)
		}
	})
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		return r.refused.Load(), fmt.Errorf("REST publishes still unanswered after %v", timeout)
	}
	if err := r.firstErr.Load(); err != nil {
		return r.refused.Load(), *err
	}
	return r.refused.Load(), nil
}

func (r *restSink) close() {
	r.closeOnce.Do(func() {
		for _, ch := range r.work {
			close(ch)
		}
	})
	r.client.CloseIdleConnections()
}
