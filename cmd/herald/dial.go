package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
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

func (d *dialFlags) dial() (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if d.useTLS || d.caFile != "" || d.certFile != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if d.caFile != "" {
			pem, err := os.ReadFile(d.caFile)
			if err != nil {
				return nil, fmt.Errorf("--tls-ca: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--tls-ca: %s holds no PEM certificate", d.caFile)
			}
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
