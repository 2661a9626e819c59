package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	sse "github.com/tmaxmax/go-sse"

	"github.com/heraldhq/herald/internal/config"
)

const tailSynopsis = `Prints the events of one or more topics as they arrive over Server-Sent
Events, one line each on stdout: id, type, JSON data. Stop it with Ctrl-C.

  herald tail --topic 'orders.>' --topic chat.rooms.lobby
  herald tail --url https://herald.example.com --tls-ca ca.pem --token "$TOKEN" --topic 'orders.>'

When the connection fails or drops (refused, reset, a 5xx or 429 answer, the
stream ending), it says so on stderr, waits (from half a second, doubling up
to 30 s, with jitter) and resumes with Last-Event-ID. It gives up, with exit
status 1, when waiting cannot help: a certificate it does not trust, TLS on
one side only, a refusal (400, 401, 403, 404), or an answer that is not an
event stream (e.g. --url naming the gRPC port rather than the HTTP one).`

// The waits between attempts: from tailMinWait, doubling up to tailMaxWait.
const (
	tailMinWait = 500 * time.Millisecond
	tailMaxWait = 30 * time.Second
	// tailMaxEvent bounds one event's bytes; the server's limit
	// (--max-event-bytes, 1 MiB by default) applies to the protobuf
	// payload, whose JSON may be several times larger.
	tailMaxEvent = 64 << 20
)

type tailFlags struct {
	url    string
	last   string
	token  string
	useTLS bool
	caFile string
	topics config.StringList
}

func newTailCmd() *cobra.Command {
	var t tailFlags
	cmd := &cobra.Command{
		Use:   "tail [flags]",
		Short: "Print the events of topics as they arrive over SSE",
		Long:  tailSynopsis,
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return t.run(cmd, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&t.url, "url", "http://localhost:8080", "HTTP base URL of a Herald node (its --http-addr)")
	fs.StringVar(&t.last, "last-event-id", "", "resume after this event id")
	fs.StringVar(&t.token, "token", "", "bearer token allowing the topics (not needed for public topics)")
	fs.BoolVar(&t.useTLS, "tls", false, "connect with TLS (https), whatever the scheme of --url (implied by --tls-ca and an https:// --url); the system's roots verify the server unless --tls-ca is given")
	fs.StringVar(&t.caFile, "tls-ca", "", "PEM CA file that verifies the server's certificate")
	fs.Var(&t.topics, "topic", "topic or pattern (* one token, > the rest); may repeat (required)")
	markSettings(cmd)
	return cmd
}

// A permanentError ends tail: trying again cannot help.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanent(format string, args ...any) error {
	return &permanentError{fmt.Errorf(format, args...)}
}

// A retryAfter is a transient failure whose server said how long to wait.
type retryAfter struct {
	err  error
	wait time.Duration
}

func (e *retryAfter) Error() string { return e.err.Error() }
func (e *retryAfter) Unwrap() error { return e.err }

func (t *tailFlags) run(cmd *cobra.Command, stdout, stderr io.Writer) error {
	if len(t.topics) == 0 {
		return usagef(cmd, "at least one --topic is required")
	}
	target, err := t.eventsURL()
	if err != nil {
		return usagef(cmd, "%v", err)
	}
	client, err := t.client()
	if err != nil {
		return usagef(cmd, "%v", err)
	}
	defer client.CloseIdleConnections()
	ctx := cmd.Context()
	out := bufio.NewWriter(stdout)
	last := t.last
	wait := tailMinWait
	for {
		connected, err := t.stream(ctx, client, target, &last, out)
		if ctx.Err() != nil {
			return nil
		}
		if errors.As(err, new(*permanentError)) {
			return fmt.Errorf("tail: %w", err)
		}
		if connected {
			wait = tailMinWait
		}
		// Equal jitter: between half the wait and the whole of it, so
		// that clients cut off together do not come back together.
		d := wait/2 + rand.N(wait/2+1)
		if ra := new(retryAfter); errors.As(err, &ra) && ra.wait > d {
			d = min(ra.wait, 5*time.Minute)
		}
		wait = min(2*wait, tailMaxWait)
		fmt.Fprintf(stderr, "herald: tail: %v; reconnecting in %v\n", err, d.Round(time.Millisecond))
		timer := time.NewTimer(d)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
	}
}

// eventsURL is the subscription's URL: --url's /v1/events with the topics,
// https when TLS is asked for.
func (t *tailFlags) eventsURL() (string, error) {
	u, err := url.Parse(strings.TrimRight(t.url, "/"))
	if err != nil {
		return "", fmt.Errorf("--url: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("--url %q: want http:// or https:// and a host, e.g. http://localhost:8080", t.url)
	case u.Host == "":
		return "", fmt.Errorf("--url %q: no host", t.url)
	}
	if t.useTLS || t.caFile != "" {
		u.Scheme = "https"
	}
	u.Path += "/v1/events"
	u.RawQuery = url.Values{"topic": t.topics}.Encode()
	return u.String(), nil
}

func (t *tailFlags) client() (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if t.caFile != "" {
		pool, err := readCA("tls-ca", t.caFile)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	// A stream has no overall timeout; a server that takes this long to
	// answer at all is retried.
	tr.ResponseHeaderTimeout = 30 * time.Second
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &clientFirstConn{Conn: conn, written: make(chan struct{}), closed: make(chan struct{})}, nil
	}
	return &http.Client{Transport: tr}, nil
}

// A clientFirstConn holds reads back until the first write. A server that
// speaks first (gRPC's sends its HTTP/2 settings at once) then gets the
// same answer every time, "malformed HTTP response", rather than one that
// depends on whether its bytes beat the request, which net/http reports
// with a line on the standard logger.
type clientFirstConn struct {
	net.Conn
	written, closed      chan struct{}
	writeOnce, closeOnce sync.Once
}

func (c *clientFirstConn) Read(p []byte) (int, error) {
	select {
	case <-c.written:
	case <-c.closed:
		return 0, net.ErrClosed
	}
	return c.Conn.Read(p)
}

func (c *clientFirstConn) Write(p []byte) (int, error) {
	c.writeOnce.Do(func() { close(c.written) })
	return c.Conn.Write(p)
}

func (c *clientFirstConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// stream subscribes once and prints events until the stream ends. It
// reports whether the server answered with an event stream, and why the
// stream ended: a *permanentError when trying again cannot help.
func (t *tailFlags) stream(ctx context.Context, client *http.Client, target string, last *string, out *bufio.Writer) (connected bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return false, &permanentError{err}
	}
	req.Header.Set("Accept", "text/event-stream")
	if *last != "" {
		req.Header.Set("Last-Event-ID", *last)
	}
	if t.token != "" {
		req.Header.Set("Authorization", "Bearer "+t.token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, connectError(ctx, req.URL, err)
	}
	defer resp.Body.Close()
	if err := checkResponse(resp); err != nil {
		return false, err
	}
	for ev, err := range sse.Read(resp.Body, &sse.ReadConfig{MaxEventSize: tailMaxEvent}) {
		if err != nil {
			if errors.Is(err, bufio.ErrTooLong) {
				// Resuming would fetch the same event again.
				return true, permanent("an event after %q is over %d bytes", *last, tailMaxEvent)
			}
			return true, fmt.Errorf("the stream broke: %w", err)
		}
		typ := ev.Type
		if typ == "" {
			typ = "message"
		}
		fmt.Fprintf(out, "%s %s %s\n", ev.LastEventID, typ, ev.Data)
		if err := out.Flush(); err != nil {
			return true, &permanentError{err}
		}
		*last = ev.LastEventID
	}
	return true, errors.New("the server ended the stream")
}

// connectError classifies a failure to get an answer. Certificates and
// protocols do not change by waiting; refused and reset connections do.
func connectError(ctx context.Context, u *url.URL, err error) error {
	var (
		verify    *tls.CertificateVerificationError
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		header    tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &verify), errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid):
		return permanent("%w (the server's certificate is not trusted: give the CA that signed it with --tls-ca)", err)
	case errors.As(err, &header), strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return permanent("the server at %s does not speak TLS: drop --tls and --tls-ca, or use an http:// --url", u.Host)
	case strings.Contains(err.Error(), "malformed HTTP response"):
		return permanent("the server at %s does not answer in HTTP/1.1: is it Herald's gRPC port? --url takes the HTTP address (herald serve --http-addr, :8080 by default)", u.Host)
	case u.Scheme == "http" && errors.Is(err, io.EOF) && speaksTLS(ctx, u.Host) == tlsYes:
		// A TLS server hangs up on plaintext without a word (Herald's
		// gRPC port with --grpc-tls-cert does).
		return permanent("the server at %s speaks TLS: add --tls, or use an https:// --url", u.Host)
	}
	return err
}

// checkResponse accepts an event stream, and classifies anything else.
func checkResponse(resp *http.Response) error {
	if resp.StatusCode == http.StatusOK {
		mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if mt != "text/event-stream" {
			return permanent("the server answered with %q, not an event stream: is --url Herald's HTTP address (herald serve --http-addr)?", resp.Header.Get("Content-Type"))
		}
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var msg struct{ Message string }
	if json.Unmarshal(body, &msg) != nil || msg.Message == "" {
		msg.Message = strings.TrimSpace(string(body))
	}
	err := fmt.Errorf("%s: %s", resp.Status, msg.Message)
	switch code := resp.StatusCode; {
	case code == http.StatusBadRequest && strings.Contains(msg.Message, "HTTP request to an HTTPS server"):
		return permanent("the server speaks TLS: add --tls, or use an https:// --url (%s)", resp.Status)
	case code == http.StatusUnauthorized:
		if msg.Message == "" {
			msg.Message = resp.Header.Get("WWW-Authenticate")
		}
		return permanent("%s: %s (give --token a token whose subscribe grant covers the topics; herald token mints one)", resp.Status, msg.Message)
	case code == http.StatusForbidden:
		return permanent("%w (the token does not allow these topics)", err)
	case code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code >= 500:
		if s, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && s > 0 {
			return &retryAfter{err: err, wait: time.Duration(s) * time.Second}
		}
		return err
	case code == http.StatusNotFound, code == http.StatusUnsupportedMediaType, strings.HasPrefix(resp.Header.Get("Content-Type"), "application/grpc"):
		return permanent("%w (is --url Herald's HTTP address, herald serve --http-addr?)", err)
	}
	return &permanentError{err}
}
