package remote

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// TLSFiles is a client's TLS settings as an operator gives them: files.
type TLSFiles struct {
	// CAFile is a PEM file of the CAs that sign the server's certificate
	// (default: the system's roots).
	CAFile string
	// CertFile and KeyFile are a client certificate and its key, for
	// servers that verify clients.
	CertFile, KeyFile string
	// InsecureSkipVerify accepts any server certificate. For tests only.
	InsecureSkipVerify bool
}

// Set reports whether any setting is given: any one turns TLS on.
func (f TLSFiles) Set() bool {
	return f.CAFile != "" || f.CertFile != "" || f.InsecureSkipVerify
}

// Apply reads the files into cfg.
func (f TLSFiles) Apply(cfg *tls.Config) error {
	cfg.InsecureSkipVerify = f.InsecureSkipVerify //nolint:gosec // opt-in, for tests
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return fmt.Errorf("TLS CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("TLS CA file %s holds no PEM certificate", f.CAFile)
		}
		cfg.RootCAs = pool
	}
	if f.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return fmt.Errorf("TLS client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return nil
}
