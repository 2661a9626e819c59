package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"

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

Production tokens come from your identity provider with the same claim:
  {"sub": "...", "exp": ..., "herald": {"publish": [...], "subscribe": [...], "schemas": [...]}}`

func token(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("token", tokenSynopsis, stderr)
	keyFile := fs.String("key", "", "HS256 secret file or PEM private key file (required)")
	subject := fs.String("subject", "dev", "the token's sub claim (publish rate limits count per subject)")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid: its exp claim, which is always set")
	issuer := fs.String("issuer", "", "the token's iss claim")
	audience := fs.String("audience", "", "the token's aud claim")
	var publish, subscribe, schemas config.StringList
	fs.Var(&publish, "publish", "topic or pattern the token may publish to; may repeat")
	fs.Var(&subscribe, "subscribe", "topic or pattern the token may subscribe to; may repeat")
	fs.Var(&schemas, "schemas", "protobuf package, or pattern of packages (shop.v1, 'shop.>'), whose message types the token may add or change with herald schemas push; may repeat")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *keyFile == "" {
		fs.Usage()
		return errors.New("token: --key is required")
	}
	if *ttl <= 0 {
		return fmt.Errorf("token: --ttl must be positive, got %v", *ttl)
	}
	for _, p := range slices.Concat(publish, subscribe, schemas) {
		if _, err := broker.ParsePattern(p); err != nil {
			return fmt.Errorf("token: %w", err)
		}
	}
	raw, err := os.ReadFile(*keyFile)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	key, alg, err := signingKey(raw)
	if err != nil {
		return fmt.Errorf("token: %s: %w", *keyFile, err)
	}
	now := time.Now()
	b := jwt.NewBuilder().Subject(*subject).IssuedAt(now).Expiration(now.Add(*ttl)).
		Claim(jwtauth.ClaimName, jwtauth.Grants{Publish: publish, Subscribe: subscribe, Schemas: schemas})
	if *issuer != "" {
		b = b.Issuer(*issuer)
	}
	if *audience != "" {
		b = b.Audience([]string{*audience})
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
