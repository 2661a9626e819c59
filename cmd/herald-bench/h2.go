package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// HTTP/2 scenarios: the delivery scenarios with the subscribers speaking
// HTTP/2, against Herald and the same floor served over HTTP/2.
//
//	h2   HTTPS, HTTP/2 by ALPN, one connection per subscriber, as browsers
//	     connect straight to Herald (a page's streams share a connection,
//	     but each browser is one connection); one self-signed ECDSA P-256
//	     certificate per run, given to Herald (--tls-cert) and the floor
//	h2c  HTTP/2 without TLS by prior knowledge, --h2-streams-per-conn
//	     streams per connection, as a TLS-terminating proxy forwards many
//	     browsers' streams over few connections
//
// The client is net/http's HTTP/2 transport, one http.ClientConn per
// connection, so that the streams per connection are what the scenario
// says; each response body is scanned by the same line reader as the
// HTTP/1.1 client's (sseConn.read).

// protoH2 and protoH2C are deliverySpec.proto's values; "" is HTTP/1.1.
const (
	protoH2  = "h2"
	protoH2C = "h2c"
)

// h2Scenario adds the HTTP/2 variants of fanout (every --fanout-rates
// rate) or idle over proto.
func (b *bench) h2Scenario(base, proto string, rates []float64) error {
	if b.cfg.publisher != "grpc" && base == "fanout" {
		return fmt.Errorf("scenario %s-%s publishes over gRPC only, not --publisher %s", base, proto, b.cfg.publisher)
	}
	if b.cfg.h2StreamsPerConn <= 0 {
		return errors.New("--h2-streams-per-conn must be positive")
	}
	label := map[string]string{protoH2: "HTTP/2+TLS", protoH2C: "h2c"}[proto]
	if base == "idle" {
		b.delivery(deliverySpec{key: "idle-" + proto, title: "4 idle " + label, conns: b.cfg.h2IdleStreams, topics: 1,
			proto: proto, kinds: b.kinds()})
		return nil
	}
	for _, rate := range rates {
		b.delivery(deliverySpec{key: fmt.Sprintf("fanout-%s-%g", proto, rate), title: fmt.Sprintf("1 fan-out %s %g/s", label, rate),
			conns: b.cfg.fanoutSubs, topics: 1, rate: rate, proto: proto, kinds: b.kinds()})
	}
	return nil
}

// protoFlags are the flags that make a server (herald serve, or
// herald-bench floor-sse when floor is set) speak proto on its HTTP port.
// Herald serves h2c on its plain HTTP port without being asked.
func (b *bench) protoFlags(proto string, floor bool) ([]string, error) {
	switch proto {
	case "":
		return nil, nil
	case protoH2C:
		if floor {
			return []string{"--h2c"}, nil
		}
		return nil, nil
	case protoH2:
		cert, key, err := b.certificate()
		if err != nil {
			return nil, err
		}
		return []string{"--tls-cert", cert, "--tls-key", key}, nil
	}
	return nil, fmt.Errorf("unknown protocol %q", proto)
}

// certificate returns the files of the run's certificate and key,
// creating them the first time.
func (b *bench) certificate() (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(b.dir, "cert.pem"), filepath.Join(b.dir, "key.pem")
	if b.certPool != nil {
		return certFile, keyFile, nil
	}
	certPEM, keyPEM, err := selfSigned()
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	b.certPool = x509.NewCertPool()
	b.certPool.AppendCertsFromPEM(certPEM)
	return certFile, keyFile, nil
}

// selfSigned makes a certificate for 127.0.0.1 and localhost with an
// ECDSA P-256 key, the cheapest handshake a browser would accept, and
// returns it and its key in PEM.
func selfSigned() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "herald-bench"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// openStreams opens spec.conns subscriptions over spec.proto.
func (b *bench) openStreams(ctx context.Context, spec deliverySpec, httpAddr string, filterOf func(int) string, win *window) ([]*sseConn, error) {
	topicOf := func(i int) int { return i % spec.topics }
	if spec.proto == "" {
		return openSSE(ctx, b.dialer, httpAddr, spec.conns, b.cfg.dialParallel, topicOf, filterOf, win)
	}
	perConn := b.cfg.h2StreamsPerConn
	if spec.proto == protoH2 {
		perConn = 1
	}
	return openH2(ctx, b.h2Transport(spec.proto), spec.proto, httpAddr, spec.conns, perConn, b.cfg.dialParallel, topicOf, win)
}

// h2Transport is the client of a protocol: HTTP/2 only, over the run's
// source addresses, trusting the run's certificate.
func (b *bench) h2Transport(proto string) *http.Transport {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return b.dialer.dial(ctx, addr) },
		Protocols:   new(http.Protocols),
	}
	if proto == protoH2 {
		tr.Protocols.SetHTTP2(true)
		tr.TLSClientConfig = &tls.Config{RootCAs: b.certPool}
	} else {
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	return tr
}

// openH2 opens n HTTP/2 streams to httpAddr over ceil(n/perConn)
// connections of tr, perConn streams on each (the last may have fewer),
// dialParallel connections at a time, stream i subscribing to
// topicName(topicOf(i)). It returns once every stream has its response
// headers.
func openH2(ctx context.Context, tr *http.Transport, proto, httpAddr string, n, perConn, dialParallel int, topicOf func(int) int, win *window) ([]*sseConn, error) {
	scheme := "http"
	if proto == protoH2 {
		scheme = "https"
	}
	conns := make([]*sseConn, n)
	sem := make(chan struct{}, max(dialParallel, 1))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	for first := 0; first < n; first += perConn {
		sem <- struct{}{}
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			cc, err := tr.NewClientConn(dctx, scheme, httpAddr)
			if err != nil {
				fail(fmt.Errorf("connection of stream %d: %w", first, err))
				return
			}
			last := min(first+perConn, n)
			shared := &sharedConn{cc: cc, open: int32(last - first)}
			for i := first; i < last; i++ {
				c, err := requestH2(cc, scheme, httpAddr, topicOf(i), win, shared)
				if err != nil {
					fail(fmt.Errorf("stream %d: %w", i, err))
					// The streams not opened will not close it.
					for range last - i {
						shared.release()
					}
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		closeSSE(conns)
		return nil, firstErr
	}
	return conns, nil
}

// requestH2 opens one stream on cc and starts its reader.
func requestH2(cc *http.ClientConn, scheme, httpAddr string, topic int, win *window, shared *sharedConn) (*sseConn, error) {
	q := url.Values{"topic": {topicName(topic)}}
	req, err := http.NewRequest(http.MethodGet, scheme+"://"+httpAddr+"/v1/events?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	resp, err := cc.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		resp.Body.Close()
		return nil, fmt.Errorf("status %q over %s, want 200 over HTTP/2", resp.Status, resp.Proto)
	}
	c := &sseConn{topic: topic, win: win, done: make(chan struct{}), stream: &h2Stream{body: resp.Body, conn: shared}}
	go c.read(bufio.NewReaderSize(resp.Body, 4096))
	return c, nil
}

// An h2Stream is an sseConn's HTTP/2 stream: closing it resets the stream,
// and closes the connection once its last stream is closed.
type h2Stream struct {
	body io.Closer
	conn *sharedConn
	once sync.Once
}

func (s *h2Stream) Close() error {
	s.once.Do(func() {
		s.body.Close()
		s.conn.release()
	})
	return nil
}

// A sharedConn is an HTTP/2 connection and how many of its streams are
// still open.
type sharedConn struct {
	cc   *http.ClientConn
	open int32
}

func (c *sharedConn) release() {
	if atomic.AddInt32(&c.open, -1) == 0 {
		c.cc.Close()
	}
}

// floorServer is the floor's HTTP server: HTTP/1.1, plus HTTP/2 over TLS
// by ALPN when certFile is set (with the TLS settings herald serve uses
// for --tls-cert), or plus h2c when h2c is set.
func floorServer(handler http.Handler, certFile, keyFile string, h2c bool) (*http.Server, error) {
	hs := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, Protocols: new(http.Protocols)}
	hs.Protocols.SetHTTP1(true)
	if h2c {
		hs.Protocols.SetUnencryptedHTTP2(true)
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		hs.Protocols.SetHTTP2(true)
		hs.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return hs, nil
}

// serveFloor serves hs on ln, over TLS if hs has a TLS configuration.
func serveFloor(hs *http.Server, ln net.Listener) error {
	if hs.TLSConfig != nil {
		return hs.ServeTLS(ln, "", "")
	}
	return hs.Serve(ln)
}

// h2Remark says, for streams sharing connections, what each connection
// costs with its streams: a stream's memory is the table's per-"conn"
// figure.
func (b *bench) h2Remark(spec deliverySpec, r *result) string {
	if spec.proto != protoH2C {
		return ""
	}
	n := (spec.conns + b.cfg.h2StreamsPerConn - 1) / b.cfg.h2StreamsPerConn
	return fmt.Sprintf("%d streams over %d connections: %.1f KiB per stream, %.1f KiB per connection with its streams",
		spec.conns, n, r.RSSPerConn/1024, float64(r.RSSConnected-r.RSSBefore)/float64(n)/1024)
}
