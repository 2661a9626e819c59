package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/heraldhq/herald/bridge"
	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/auth/jwtauth"
	"github.com/heraldhq/herald/internal/config"
)

// securityFlags are serve's settings for who may do what, and the limits.
type securityFlags struct {
	dev              bool
	hmacSecrets      config.StringList
	oldSecretName    bool // --auth-hs256-secret, the deprecated name of --auth-hs256-secret-file, was set
	publicKeys       config.StringList
	jwksFile         string
	jwksURL          string
	issuer           string
	audience         string
	allowNoExp       bool
	publicTopics     config.StringList
	cookie           string
	queryToken       bool
	publishRate      float64
	publishBurst     int
	maxConns         int
	maxConnsPerIP    int
	trustedProxies   config.StringList
	maxTopics        int
	maxSnapshot      int
	grpcTLSCert      string
	grpcTLSKey       string
	grpcClientCA     string
	clientCertTopics config.StringList
}

func (s *securityFlags) register(fs *pflag.FlagSet) {
	fs.BoolVar(&s.dev, "dev", false, "development mode: anyone may publish and subscribe to anything, and Herald listens on loopback only (refusing other addresses). Never in production. --demo implies it")
	fs.Var(&s.hmacSecrets, "auth-hs256-secret-file", "file holding a shared secret (at least 32 bytes) that signs HS256 tokens; may repeat")
	config.Alias(fs, "auth-hs256-secret", "auth-hs256-secret-file", &s.oldSecretName)
	fs.Var(&s.publicKeys, "auth-public-key", "PEM public key file (RSA: RS256, ECDSA P-256: ES256, Ed25519: EdDSA) that verifies tokens; may repeat")
	fs.StringVar(&s.jwksFile, "auth-jwks-file", "", "JSON Web Key Set file of keys that verify tokens")
	fs.StringVar(&s.jwksURL, "auth-jwks-url", "", "URL of a JSON Web Key Set, fetched at start, cached and refreshed every 15 minutes")
	fs.StringVar(&s.issuer, "auth-issuer", "", "required iss claim of tokens (not checked when empty)")
	fs.StringVar(&s.audience, "auth-audience", "", "required aud claim of tokens (not checked when empty)")
	fs.BoolVar(&s.allowNoExp, "auth-allow-no-exp", false, "accept tokens without an exp claim (refused otherwise). Such a token never expires: short of removing the key that signed it, it can never be cut off")
	fs.Var(&s.publicTopics, "public-topics", "topic or pattern anyone may subscribe to without a token, e.g. 'monitoring.>'; may repeat")
	fs.StringVar(&s.cookie, "auth-cookie", "herald_token", "cookie that may carry a subscriber's token (for EventSource with withCredentials)")
	fs.BoolVar(&s.queryToken, "auth-query-token", false, "also accept a subscriber's token as the access_token query parameter (it then shows up in access logs and browser history)")
	fs.Float64Var(&s.publishRate, "publish-rate", 0, "events per second one token may publish (0: no limit); over it: RESOURCE_EXHAUSTED / 429 with Retry-After")
	fs.IntVar(&s.publishBurst, "publish-burst", 0, "events one token may publish at once above --publish-rate (default: the rate)")
	fs.IntVar(&s.maxConns, "max-connections", 0, "concurrent streams on this node, SSE and gRPC Subscribe together (0: no limit); over it: 429 / RESOURCE_EXHAUSTED")
	fs.IntVar(&s.maxConnsPerIP, "max-connections-per-ip", 0, "concurrent streams, SSE and gRPC Subscribe, per client address (0: no limit); over it: 429 / RESOURCE_EXHAUSTED")
	fs.Var(&s.trustedProxies, "trusted-proxies", "address or CIDR of a proxy whose X-Forwarded-For names the client (for --max-connections-per-ip); may repeat")
	fs.IntVar(&s.maxTopics, "max-topics", 64, "topic parameters allowed in one subscription")
	fs.IntVar(&s.maxSnapshot, "max-snapshot-topics", bridge.DefaultMaxSnapshotTopics, "topics one snapshot=true subscription may match (deleted ones count while their deletion is retained); a larger snapshot is refused with 400 / INVALID_ARGUMENT naming the limit")
	fs.StringVar(&s.grpcTLSCert, "grpc-tls-cert", "", "PEM certificate file: serve gRPC over TLS; needs --grpc-tls-key")
	fs.StringVar(&s.grpcTLSKey, "grpc-tls-key", "", "PEM private key file for --grpc-tls-cert")
	fs.StringVar(&s.grpcClientCA, "grpc-client-ca", "", "PEM CA file: gRPC clients may authenticate with certificates it signed (mutual TLS)")
	fs.Var(&s.clientCertTopics, "grpc-client-cert-topics", "`common-name=pattern,pattern`: topics a client certificate with this subject common name may publish to, e.g. billing=orders.>; may repeat")
}

// validate checks the security flags without reading files; in
// development mode, that addrs are loopback addresses.
func (s *securityFlags) validate(addrs ...string) error {
	if _, err := trustedProxies(s.trustedProxies); err != nil {
		return err
	}
	if s.grpcTLSCert == "" && s.grpcTLSKey == "" && s.grpcClientCA != "" {
		return errors.New("--grpc-client-ca needs --grpc-tls-cert and --grpc-tls-key")
	}
	if (s.grpcTLSCert == "") != (s.grpcTLSKey == "") {
		return errors.New("--grpc-tls-cert and --grpc-tls-key go together")
	}
	if s.dev {
		for _, a := range addrs {
			if _, err := devAddr(a); err != nil {
				return err
			}
		}
		return nil
	}
	_, err := certTopics(s.clientCertTopics)
	return err
}

// apply builds the authenticator and fills cfg's security settings. In
// development mode it also moves listen addresses to loopback. The flags
// must have passed validate.
func (s *securityFlags) apply(ctx context.Context, cfg *bridge.Config, addrs []*string, log *slog.Logger) error {
	if s.oldSecretName {
		log.Warn("--auth-hs256-secret is deprecated: use --auth-hs256-secret-file")
	}
	cfg.AuthCookie, cfg.AllowQueryToken = s.cookie, s.queryToken
	cfg.PublishRate, cfg.PublishBurst = s.publishRate, s.publishBurst
	cfg.MaxConnections, cfg.MaxConnectionsPerIP, cfg.MaxTopicsPerSubscription = s.maxConns, s.maxConnsPerIP, s.maxTopics
	cfg.MaxSnapshotTopics = s.maxSnapshot
	var err error
	if cfg.TrustedProxies, err = trustedProxies(s.trustedProxies); err != nil {
		return err
	}
	if err := s.grpcTLS(cfg); err != nil {
		return err
	}
	if s.dev {
		for _, a := range addrs {
			loopback, err := devAddr(*a)
			if err != nil {
				return err
			}
			*a = loopback
		}
		cfg.Auth = auth.Dev()
		log.Warn("DEVELOPMENT MODE: anyone on this machine may publish and subscribe to every topic, without a token. Listening on loopback only. Do not use --dev in production.")
		return nil
	}
	certs, err := certTopics(s.clientCertTopics)
	if err != nil {
		return err
	}
	a, err := jwtauth.New(ctx, jwtauth.Config{
		HMACSecretFiles:  s.hmacSecrets,
		PublicKeyFiles:   s.publicKeys,
		JWKSFile:         s.jwksFile,
		JWKSURL:          s.jwksURL,
		Issuer:           s.issuer,
		Audience:         s.audience,
		AllowNoExp:       s.allowNoExp,
		PublicTopics:     s.publicTopics,
		ClientCertTopics: certs,
	})
	if err != nil {
		return err
	}
	cfg.Auth = a
	if !a.HasKeys() && len(certs) == 0 {
		log.Warn("no token keys configured (--auth-hs256-secret-file, --auth-public-key, --auth-jwks-*): every publish is refused, and only --public-topics may be subscribed to. Use --dev on a development machine.", "public_topics", len(s.publicTopics))
	}
	return nil
}

// trustedProxies parses --trusted-proxies.
func trustedProxies(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, p := range list {
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			addr, aerr := netip.ParseAddr(p)
			if aerr != nil {
				return nil, fmt.Errorf("--trusted-proxies %q: want an address or a CIDR", p)
			}
			prefix = netip.PrefixFrom(addr, addr.BitLen())
		}
		out = append(out, prefix)
	}
	return out, nil
}

// certTopics parses --grpc-client-cert-topics.
func certTopics(list []string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, m := range regroup(list) {
		cn, topics, ok := strings.Cut(m, "=")
		if !ok || cn == "" || topics == "" {
			return nil, fmt.Errorf("--grpc-client-cert-topics %q: want COMMON-NAME=pattern,pattern", m)
		}
		out[cn] = append(out[cn], strings.Split(topics, ",")...)
	}
	return out, nil
}

// grpcTLS loads the gRPC listener's certificate and client CA, if any.
func (s *securityFlags) grpcTLS(cfg *bridge.Config) error {
	if s.grpcTLSCert == "" {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(s.grpcTLSCert, s.grpcTLSKey)
	if err != nil {
		return fmt.Errorf("--grpc-tls-cert/--grpc-tls-key: %w", err)
	}
	t := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if s.grpcClientCA != "" {
		pem, err := os.ReadFile(s.grpcClientCA)
		if err != nil {
			return fmt.Errorf("--grpc-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--grpc-client-ca: %s holds no PEM certificate", s.grpcClientCA)
		}
		// Certificates are optional: token-only clients still connect.
		t.ClientCAs, t.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	cfg.GRPCTLS = t
	return nil
}

// devAddr keeps development mode on loopback: an address without a host
// (":8080") becomes 127.0.0.1:8080; any other non-loopback host is refused.
func devAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("--dev: %q: %w", addr, err)
	}
	if host == "" {
		return net.JoinHostPort("127.0.0.1", port), nil
	}
	if loopbackHost(host) {
		return addr, nil
	}
	return "", fmt.Errorf("--dev refuses to listen on %s: development mode opens every topic to everyone, so it serves loopback addresses only (127.0.0.1, ::1, localhost)", addr)
}
