package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// dialFlags are how the CLI reaches a Herald node's gRPC port.
type dialFlags struct {
	server   string
	useTLS   bool
	caFile   string
	certFile string
	keyFile  string
}

func (d *dialFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&d.server, "server", "localhost:9090", "gRPC address of a Herald node")
	fs.BoolVar(&d.useTLS, "tls", false, "connect with TLS (implied by --tls-ca and --tls-cert); the system's roots verify the server unless --tls-ca is given")
	fs.StringVar(&d.caFile, "tls-ca", "", "PEM CA file that verifies the server's certificate")
	fs.StringVar(&d.certFile, "tls-cert", "", "PEM client certificate, for servers that map certificates to topics (mutual TLS)")
	fs.StringVar(&d.keyFile, "tls-key", "", "PEM private key of --tls-cert")
}

func (d *dialFlags) tls() bool { return d.useTLS || d.caFile != "" || d.certFile != "" }

func (d *dialFlags) dial() (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if d.tls() {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if d.caFile != "" {
			pool, err := readCA("tls-ca", d.caFile)
			if err != nil {
				return nil, err
			}
			cfg.RootCAs = pool
		}
		if d.certFile != "" || d.keyFile != "" {
			cert, err := tls.LoadX509KeyPair(d.certFile, d.keyFile)
			if err != nil {
				return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		creds = credentials.NewTLS(cfg)
	}
	return grpc.NewClient(d.server, grpc.WithTransportCredentials(creds))
}

// readCA reads the PEM certificates of the file named by --flag.
func readCA(flag, file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flag, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--%s: %s holds no PEM certificate", flag, file)
	}
	return pool, nil
}

// rpcError describes the error of a call: its code and message and, when
// the server could not be reached, whether TLS on one side only is why.
// gRPC reports that mismatch as "error reading server preface: EOF" or a
// failed handshake, which names neither TLS nor the flag to change.
func (d *dialFlags) rpcError(ctx context.Context, err error) string {
	text := statusText(err)
	if status.Code(err) == codes.Unimplemented && strings.Contains(text, "unexpected HTTP status code") {
		// An HTTP server that is not gRPC's: Herald's HTTP port?
		return text + " (is --server Herald's gRPC address, herald serve --grpc-addr, :9090 by default?)"
	}
	if status.Code(err) != codes.Unavailable {
		return text
	}
	switch speaksTLS(ctx, d.server) {
	case tlsYes:
		if !d.tls() {
			return text + " (the server speaks TLS: add --tls, and --tls-ca if a private CA signed its certificate)"
		}
	case tlsNo:
		if d.tls() {
			return text + " (the server does not speak TLS: drop --tls, --tls-ca and --tls-cert)"
		}
	}
	return text
}

type tlsAnswer int

const (
	tlsUnknown tlsAnswer = iota // unreachable, or an answer that tells neither
	tlsYes
	tlsNo
)

// speaksTLS starts a TLS handshake with addr to learn whether it speaks
// TLS. Any TLS answer, a certificate this machine does not trust or a
// refusal included, is a yes; a first record that is not TLS is a no.
// Nothing is sent over the connection, which is closed at once.
func speaksTLS(ctx context.Context, addr string) tlsAnswer {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return tlsUnknown
	}
	defer raw.Close()
	host, _, _ := net.SplitHostPort(addr)
	conn := tls.Client(raw, &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12})
	err = conn.HandshakeContext(ctx)
	var (
		header    tls.RecordHeaderError
		verify    *tls.CertificateVerificationError
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		op        *net.OpError
	)
	switch {
	case err == nil, errors.As(err, &verify), errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid),
		errors.As(err, &op) && op.Op == "remote error": // an alert: the server refused the handshake
		return tlsYes
	case errors.As(err, &header):
		return tlsNo
	}
	return tlsUnknown
}
