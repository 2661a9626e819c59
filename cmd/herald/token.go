package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/internal/auth/jwtauth"
	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/config"
)

const tokenSynopsis = `Mints a token for development and tests: a JWT signed with --key (an HS256
secret file, or a PEM private key: RSA, ECDSA P-256 or Ed25519), whose
"herald" claim grants the given topics and schema packages.

  head -c 32 /dev/urandom | base64 > secret     # once
  herald serve --auth-hs256-secret-file secret
  herald token --key secret --publish 'orders.>' --subscribe 'orders.*' --ttl 1h
  herald token --key secret --schemas 'orders.>'     # may push schemas of orders.* packages
  herald token --key secret --admin --subject ops    # the admin API only (docs/admin.md)

Production tokens come from your identity provider with the same claim:
  {"sub": "...", "exp": ..., "herald": {"publish": [...], "subscribe": [...], "schemas": [...], "admin": true}}`

type tokenFlags struct {
	keyFile, subject, issuer, audience string
	ttl                                time.Duration
	admin                              bool
	publish, subscribe, schemas        config.StringList
}

func newTokenCmd() *cobra.Command {
	var t tokenFlags
	cmd := &cobra.Command{
		Use:   "token [flags]",
		Short: "Mint a development token",
		Long:  tokenSynopsis,
		Args:  noArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return t.run(cmd, cmd.OutOrStdout()) },
	}
	fs := cmd.Flags()
	fs.StringVar(&t.keyFile, "key", "", "HS256 secret file or PEM private key file (required)")
	fs.StringVar(&t.subject, "subject", "dev", "the token's sub claim (publish rate limits count per subject)")
	fs.DurationVar(&t.ttl, "ttl", time.Hour, "how long the token is valid: its exp claim, which is always set")
	fs.StringVar(&t.issuer, "issuer", "", "the token's iss claim")
	fs.StringVar(&t.audience, "audience", "", "the token's aud claim")
	fs.Var(&t.publish, "publish", "topic or pattern the token may publish to; may repeat")
	fs.Var(&t.subscribe, "subscribe", "topic or pattern the token may subscribe to; may repeat")
	fs.Var(&t.schemas, "schemas", "protobuf package, or pattern of packages (shop.v1, 'shop.>'), whose message types the token may add or change with herald schemas push; may repeat")
	fs.BoolVar(&t.admin, "admin", false, "grant the admin API (topics, presence, history, nodes, revocations; see docs/admin.md), which implies no publish or subscribe rights")
	markSettings(cmd)
	return cmd
}

func (t *tokenFlags) run(cmd *cobra.Command, stdout io.Writer) error {
	if t.keyFile == "" {
		return usagef(cmd, "--key is required")
	}
	if t.ttl <= 0 {
		return usagef(cmd, "--ttl must be positive, got %v", t.ttl)
	}
	for _, p := range slices.Concat(t.publish, t.subscribe, t.schemas) {
		if _, err := broker.ParsePattern(p); err != nil {
			return usagef(cmd, "%v", err)
		}
	}
	raw, err := os.ReadFile(t.keyFile)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	key, alg, err := signingKey(raw)
	if err != nil {
		return fmt.Errorf("token: %s: %w", t.keyFile, err)
	}
	now := time.Now()
	b := jwt.NewBuilder().Subject(t.subject).IssuedAt(now).Expiration(now.Add(t.ttl)).
		Claim(jwtauth.ClaimName, jwtauth.Grants{Publish: t.publish, Subscribe: t.subscribe, Schemas: t.schemas, Admin: t.admin})
	if t.issuer != "" {
		b = b.Issuer(t.issuer)
	}
	if t.audience != "" {
		b = b.Audience([]string{t.audience})
	}
	tok, err := b.Build()
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(alg, key))
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintln(stdout, string(signed))
	return nil
}

// signingKey reads a PEM private key, or else takes the bytes as an HS256
// secret.
func signingKey(raw []byte) (any, jwa.SignatureAlgorithm, error) {
	if k, err := jwk.ParseKey(raw, jwk.WithPEM(true)); err == nil {
		var alg jwa.SignatureAlgorithm
		switch k.KeyType() {
		case jwa.RSA():
			alg = jwa.RS256()
		case jwa.EC():
			alg = jwa.ES256()
		case jwa.OKP():
			alg = jwa.EdDSA()
		default:
			return nil, alg, fmt.Errorf("unsupported key type %s", k.KeyType())
		}
		return k, alg, nil
	}
	for len(raw) > 0 && (raw[len(raw)-1] == '\n' || raw[len(raw)-1] == '\r') {
		raw = raw[:len(raw)-1]
	}
	if len(raw) < 32 {
		return nil, jwa.HS256(), fmt.Errorf("an HS256 secret must be at least 32 bytes, this is %d", len(raw))
	}
	return raw, jwa.HS256(), nil
}
