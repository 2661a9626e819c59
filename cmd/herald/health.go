package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

const healthLong = `Asks the Herald node on this machine whether it is ready (GET /readyz) or,
with --live, alive (GET /healthz), prints a one-line answer and exits 0 when
it is, 1 when it is not or cannot be reached. It suits a container's health
check or a script waiting for a node to start:
  herald health --http-addr 127.0.0.1:8080
A node waiting for its broker, or shutting down, is alive but not ready.
--http-addr takes the address given to herald serve (and HERALD_HTTP_ADDR,
as serve does); a host that listens on every interface (":8080", "0.0.0.0")
is reached on 127.0.0.1.`

// healthFlags are the settings of herald health.
type healthFlags struct {
	httpAddr   string
	live       bool
	useTLS     bool
	caFile     string
	serverName string
	timeout    time.Duration
}

func newHealthCmd() *cobra.Command {
	h := new(healthFlags)
	cmd := &cobra.Command{
		Use:               "health [flags]",
		Short:             "Check that the local node is ready (or alive), for health checks",
		Long:              healthLong,
		Args:              noArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			u, err := h.url()
			if err != nil {
				return asUsage(fmt.Errorf("health: %w", err))
			}
			if h.timeout <= 0 {
				return usagef(cmd, "--timeout must be positive, got %v", h.timeout)
			}
			client, err := h.client()
			if err != nil {
				return fmt.Errorf("health: %w", err)
			}
			line, err := h.check(cmd.Context(), client, u)
			if err != nil {
				return fmt.Errorf("health: %w", err)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), line)
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&h.httpAddr, "http-addr", ":8080", "the node's --http-addr: host:port, or :port for this machine")
	fs.BoolVar(&h.live, "live", false, "check liveness (GET /healthz) instead of readiness (GET /readyz)")
	fs.BoolVar(&h.useTLS, "tls", false, "connect with TLS (https), for a node serving with --tls-cert (implied by --tls-ca); the system's roots verify it unless --tls-ca is given")
	fs.StringVar(&h.caFile, "tls-ca", "", "PEM CA file that verifies the node's certificate")
	fs.StringVar(&h.serverName, "tls-server-name", "", "name the node's certificate must hold, when it is not the host of --http-addr")
	fs.DurationVar(&h.timeout, "timeout", 5*time.Second, "longest the check may take")
	markSettings(cmd)
	return cmd
}

// url is the endpoint to ask: --http-addr's host, or 127.0.0.1 for an
// address that names every interface.
func (h *healthFlags) url() (string, error) {
	host, port, err := net.SplitHostPort(h.httpAddr)
	if err != nil {
		return "", fmt.Errorf("--http-addr %q: want host:port or :port", h.httpAddr)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	scheme, path := "http", "/readyz"
	if h.useTLS || h.caFile != "" {
		scheme = "https"
	}
	if h.live {
		path = "/healthz"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + path, nil
}

func (h *healthFlags) client() (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // the node is local: an HTTP_PROXY of the environment must not carry the check
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: h.serverName}
	if h.caFile != "" {
		pool, err := readCA("tls-ca", h.caFile)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{Transport: tr, Timeout: h.timeout}, nil
}

// check asks the node and returns its one-line answer, or an error that
// says why the node is not healthy.
func (h *healthFlags) check(ctx context.Context, client *http.Client, u string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		var verify *tls.CertificateVerificationError
		var header tls.RecordHeaderError
		switch {
		case errors.As(err, &verify):
			return "", fmt.Errorf("%s: the node's certificate is not trusted (give its CA with --tls-ca, or the name it holds with --tls-server-name): %v", u, err)
		case errors.As(err, &header), strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
			return "", fmt.Errorf("%s: the node does not speak TLS: drop --tls and --tls-ca", u)
		}
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		return "", fmt.Errorf("%s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	answer := strings.Join(strings.Fields(string(body)), " ")
	if resp.StatusCode == http.StatusBadRequest && strings.Contains(answer, "HTTPS server") {
		return "", fmt.Errorf("%s: the node speaks TLS: add --tls", u)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s: %s", u, resp.Status, answer)
	}
	return u + ": " + answer, nil
}
