package client_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

// fakePublisher is a PublisherService the test controls: it records what
// it receives, fails the first failUnary unary calls with UNAVAILABLE, and
// holds each stream response until the test releases it.
type fakePublisher struct {
	heraldv1.UnimplementedPublisherServiceServer

	failUnary int
	release   chan struct{} // nil: answer at once; else one receive per response

	mu    sync.Mutex
	calls []*heraldv1.PublishRequest
	auth  []string
	seq   int
}

func (f *fakePublisher) record(ctx context.Context, req *heraldv1.PublishRequest) string {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, req)
	f.auth = append(f.auth, md.Get("authorization")...)
	f.seq++
	return "fake-" + strconv.Itoa(f.seq)
}

func (f *fakePublisher) Publish(ctx context.Context, req *heraldv1.PublishRequest) (*heraldv1.PublishResponse, error) {
	id := f.record(ctx, req)
	f.mu.Lock()
	fail := len(f.calls) <= f.failUnary
	f.mu.Unlock()
	if fail {
		return nil, status.Error(codes.Unavailable, "broker unreachable")
	}
	return &heraldv1.PublishResponse{Id: id}, nil
}

func (f *fakePublisher) PublishStream(stream grpc.BidiStreamingServer[heraldv1.PublishRequest, heraldv1.PublishResponse]) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		id := f.record(stream.Context(), req)
		if f.release != nil {
			select {
			case <-f.release:
			case <-stream.Context().Done():
				return stream.Context().Err()
			}
		}
		if err := stream.Send(&heraldv1.PublishResponse{Id: id}); err != nil {
			return err
		}
	}
}

func (f *fakePublisher) received() []*heraldv1.PublishRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*heraldv1.PublishRequest(nil), f.calls...)
}

// startFake serves f on 127.0.0.1:0, with TLS when creds is set.
func startFake(t testing.TB, f *fakePublisher, opts ...grpc.ServerOption) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(opts...)
	heraldv1.RegisterPublisherServiceServer(s, f)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().String()
}

// selfSigned returns server credentials for 127.0.0.1 and a client TLS
// config that trusts them.
func selfSigned(t testing.TB) (grpc.ServerOption, *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "herald test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	server := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	return grpc.Creds(server), &tls.Config{RootCAs: roots}
}
