// Package jwtauth authenticates Herald's publishers and subscribers with
// JSON Web Tokens (and, for gRPC publishers, client certificates): an
// auth.Authenticator.
//
// A token is signed with HS256, RS256, ES256 or EdDSA by a key Herald
// trusts: a shared secret file, a PEM public key file, or a JWKS from a file
// or an HTTPS URL (cached and refreshed). Each key verifies one algorithm,
// which the token's header must name. A token must carry exp (unless
// Config.AllowNoExp); exp, nbf and iat are checked with a leeway for clock
// skew. Its "herald" claim lists the topics it may use, as exact names or
// patterns ("orders.*", "monitoring.>"), and "admin": true grants the admin
// API (and nothing else):
//
//	{"sub": "billing-service", "exp": 1767225600,
//	 "herald": {"publish": ["orders.>"], "subscribe": ["orders.eu"]}}
//	{"sub": "ops-alice", "exp": 1767225600, "herald": {"admin": true}}
//
// Subscriptions to public topics need no token. Without any key, only
// public topics are open.
package jwtauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/lestrrat-go/httprc/v3"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/broker"
)

// ClaimName is the token claim that holds Herald's permissions.
const ClaimName = "herald"

// Grants is the value of the "herald" claim. Publish and Subscribe list
// topics; Schemas lists the protobuf packages whose types the token may
// push (SchemaService.RegisterSchemas), in the same pattern syntax:
// "shop.v1", "shop.>". Admin grants the admin API (topics, presence,
// history, nodes, revocations), never publishing or subscribing.
type Grants struct {
	Publish   []string `json:"publish,omitempty"`
	Subscribe []string `json:"subscribe,omitempty"`
	Schemas   []string `json:"schemas,omitempty"`
	Admin     bool     `json:"admin,omitempty"`
}

// grantsClaim is the "herald" claim as parsed (jwt.WithTypedClaim): the
// grants, or the mark that the claim does not decode into them.
type grantsClaim struct {
	Grants
	malformed bool
}

// grantsDecoder decodes the "herald" claim while jwx parses a token, which it
// does only after the signature verified. It never fails: jwx would turn a
// failed typed claim into a parse error that reads like a broken token, while
// a well-signed token with a malformed claim is refused for its claim.
type grantsDecoder struct{}

func (grantsDecoder) Decode(raw []byte) (any, error) {
	var g grantsClaim
	if err := json.Unmarshal(raw, &g.Grants); err != nil {
		return grantsClaim{malformed: true}, nil
	}
	return g, nil
}

// Config configures an Authenticator.
type Config struct {
	// HMACSecretFiles hold shared secrets for HS256 (the file's bytes,
	// trailing newline removed; at least 32 bytes).
	HMACSecretFiles []string
	// PublicKeyFiles hold PEM public keys: RSA (RS256), ECDSA P-256
	// (ES256) or Ed25519 (EdDSA).
	PublicKeyFiles []string
	// JWKSFile is a JSON Web Key Set file; JWKSURL one fetched over HTTP,
	// cached and refreshed at most every JWKSRefresh (default 15m).
	JWKSFile    string
	JWKSURL     string
	JWKSRefresh time.Duration
	// Issuer and Audience, when set, must match the token's iss and aud.
	Issuer, Audience string
	// Leeway tolerates clock skew in exp, nbf and iat (default 30s;
	// negative for none).
	Leeway time.Duration
	// AllowNoExp accepts tokens without an exp claim. Such a token never
	// expires: short of removing the key that signed it, it can never be
	// cut off, so tokens without exp are refused unless this is set.
	AllowNoExp bool
	// PublicTopics are patterns anyone may subscribe to without a token.
	PublicTopics []string
	// ClientCertTopics maps a client certificate's subject common name to
	// the topics it may publish to (mutual TLS on gRPC).
	ClientCertTopics map[string][]string
	// HTTPClient fetches JWKSURL (default http.DefaultClient).
	HTTPClient *http.Client
}

// Authenticator verifies tokens and client certificates: an auth.Authenticator.
type Authenticator struct {
	cfg    Config
	static jwk.Set // every key's alg is set (addKey), and it never changes after New
	remote jwk.CachedSet
	public []broker.Pattern
	certs  map[string][]broker.Pattern
	// validateOpt checks the claims of a token whose signature verified.
	validateOpt []jwt.ValidateOption
}

var _ auth.Authenticator = (*Authenticator)(nil)

// New loads the keys of cfg. ctx bounds the first JWKS fetch and the life
// of its refreshes.
func New(ctx context.Context, cfg Config) (*Authenticator, error) {
	switch {
	case cfg.Leeway == 0:
		cfg.Leeway = 30 * time.Second
	case cfg.Leeway < 0:
		cfg.Leeway = 0
	}
	if cfg.JWKSRefresh == 0 {
		cfg.JWKSRefresh = 15 * time.Minute
	}
	a := &Authenticator{cfg: cfg, static: jwk.NewSet(), certs: map[string][]broker.Pattern{}}
	var err error
	if a.public, err = patterns(cfg.PublicTopics); err != nil {
		return nil, fmt.Errorf("auth: public topics: %w", err)
	}
	for cn, topics := range cfg.ClientCertTopics {
		if a.certs[cn], err = patterns(topics); err != nil {
			return nil, fmt.Errorf("auth: client certificate %q: %w", cn, err)
		}
	}
	for _, f := range cfg.HMACSecretFiles {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		secret := trimNewline(raw)
		if len(secret) < 32 {
			return nil, fmt.Errorf("auth: HS256 secret in %s is %d bytes; use at least 32", f, len(secret))
		}
		k, err := jwk.Import(secret)
		if err != nil {
			return nil, fmt.Errorf("auth: %s: %w", f, err)
		}
		if err := a.addKey(k, f); err != nil {
			return nil, err
		}
	}
	for _, f := range cfg.PublicKeyFiles {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		k, err := jwk.ParseKey(raw, jwk.WithPEM(true))
		if err != nil {
			return nil, fmt.Errorf("auth: %s is not a PEM public key: %w", f, err)
		}
		if err := a.addKey(k, f); err != nil {
			return nil, err
		}
	}
	if cfg.JWKSFile != "" {
		set, err := jwk.ReadFile(cfg.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("auth: JWKS file: %w", err)
		}
		for i := range set.Len() {
			k, _ := set.Key(i)
			if err := a.addKey(k, cfg.JWKSFile); err != nil {
				return nil, err
			}
		}
	}
	if cfg.JWKSURL != "" {
		client := cfg.HTTPClient
		if client == nil {
			client = http.DefaultClient
		}
		cache, err := jwk.NewCache(ctx, httprc.NewClient(httprc.WithHTTPClient(client)))
		if err != nil {
			return nil, fmt.Errorf("auth: JWKS cache: %w", err)
		}
		if err := cache.Register(ctx, cfg.JWKSURL, jwk.WithMinInterval(min(cfg.JWKSRefresh, time.Minute)), jwk.WithMaxInterval(cfg.JWKSRefresh)); err != nil {
			return nil, fmt.Errorf("auth: fetching the JWKS at %s: %w", cfg.JWKSURL, err)
		}
		if a.remote, err = cache.CachedSet(cfg.JWKSURL); err != nil {
			return nil, fmt.Errorf("auth: JWKS: %w", err)
		}
	}
	a.validateOpt = []jwt.ValidateOption{jwt.WithAcceptableSkew(cfg.Leeway)}
	if cfg.Issuer != "" {
		a.validateOpt = append(a.validateOpt, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		a.validateOpt = append(a.validateOpt, jwt.WithAudience(cfg.Audience))
	}
	return a, nil
}

// HasKeys reports whether any token can be verified.
func (a *Authenticator) HasKeys() bool { return a.static.Len() > 0 || a.remote != nil }

// addKey pins a key to the one algorithm its type allows.
func (a *Authenticator) addKey(k jwk.Key, source string) error {
	var raw any
	if err := jwk.Export(k, &raw); err != nil {
		return fmt.Errorf("auth: %s: %w", source, err)
	}
	var alg jwa.SignatureAlgorithm
	switch key := raw.(type) {
	case []byte:
		alg = jwa.HS256()
	case *rsa.PublicKey, *rsa.PrivateKey:
		alg = jwa.RS256()
	case *ecdsa.PublicKey, *ecdsa.PrivateKey:
		alg = jwa.ES256()
		if pub, ok := key.(*ecdsa.PublicKey); ok && pub.Curve.Params().BitSize != 256 {
			return fmt.Errorf("auth: %s: ES256 needs a P-256 key", source)
		}
	case ed25519.PublicKey, ed25519.PrivateKey:
		alg = jwa.EdDSA()
	default:
		return fmt.Errorf("auth: %s: unsupported key type %T (use HS256, RS256, ES256 or EdDSA keys)", source, raw)
	}
	if pk, err := k.PublicKey(); err == nil && alg != jwa.HS256() {
		k = pk // never keep private material around for verification
	}
	if err := k.Set(jwk.AlgorithmKey, alg); err != nil {
		return err
	}
	return a.static.AddKey(k)
}

// Authenticate implements auth.Authenticator.
func (a *Authenticator) Authenticate(ctx context.Context, c auth.Credentials) (auth.Permissions, error) {
	perms := auth.Permissions{Subscribe: a.public}
	if len(c.Certificates) > 0 {
		cn := c.Certificates[0].Subject.CommonName
		if topics, ok := a.certs[cn]; ok {
			perms.Publish = append(perms.Publish, topics...)
			perms.RateKey = "cert:" + cn
		}
	}
	if c.Token == "" {
		return perms, nil
	}
	tok, err := a.verify(ctx, c.Token)
	if err != nil {
		return auth.Permissions{}, err
	}
	var g grantsClaim
	if tok.Has(ClaimName) {
		if err := tok.Get(ClaimName, &g); err != nil || g.malformed {
			return auth.Permissions{}, fmt.Errorf("%w: the token's %s claim is not an object of publish, subscribe and schemas lists and an admin flag", auth.ErrUnauthenticated, ClaimName)
		}
	}
	pub, err := patterns(g.Publish)
	if err != nil {
		return auth.Permissions{}, fmt.Errorf("%w: the token's publish claim: %v", auth.ErrUnauthenticated, err)
	}
	sub, err := patterns(g.Subscribe)
	if err != nil {
		return auth.Permissions{}, fmt.Errorf("%w: the token's subscribe claim: %v", auth.ErrUnauthenticated, err)
	}
	schemas, err := patterns(g.Schemas)
	if err != nil {
		return auth.Permissions{}, fmt.Errorf("%w: the token's schemas claim: %v", auth.ErrUnauthenticated, err)
	}
	perms.Publish = append(perms.Publish, pub...)
	perms.Schemas = schemas
	perms.Admin = g.Admin
	perms.Subscribe = append(append([]broker.Pattern(nil), a.public...), sub...)
	if exp, ok := tok.Expiration(); ok {
		// When the token stops being accepted: a stream cut then and
		// reconnecting with the same token is refused, not let in again.
		perms.Expires = exp.Add(a.cfg.Leeway)
	}
	if s, ok := tok.Subject(); ok && s != "" {
		perms.Subject = s
		perms.RateKey = "sub:" + s
	} else {
		sum := sha256.Sum256([]byte(c.Token))
		perms.RateKey = "tok:" + hex.EncodeToString(sum[:12])
	}
	return perms, nil
}

// algorithms are the JWS algorithms this package verifies, each key one of
// them (addKey).
var algorithms = []jwa.SignatureAlgorithm{jwa.HS256(), jwa.RS256(), jwa.ES256(), jwa.EdDSA()}

// verify checks the token in three steps, each refusal naming the first
// problem: its header's algorithm against the keys, its signature, then its
// claims. Only a token whose signature verified has its claims judged, and
// a claim is never reported as a bad signature. Its messages are short
// ASCII without quotes, as they end up in a WWW-Authenticate challenge
// (RFC 6750 error_description), and never echo the token.
func (a *Authenticator) verify(ctx context.Context, token string) (jwt.Token, error) {
	if !a.HasKeys() {
		return nil, unauthenticated("this server trusts no signing keys, so it accepts no tokens")
	}
	msg, err := jws.ParseString(token)
	if err != nil || len(msg.Signatures()) != 1 {
		return nil, unauthenticated("the token is not a well-formed signed JWT")
	}
	alg, ok := msg.Signatures()[0].ProtectedHeaders().Algorithm()
	if !ok || alg.String() == "" {
		return nil, unauthenticated("the token's algorithm does not match any trusted key: its header has no alg")
	}
	// alg is a registered JWS algorithm name (jws.ParseString refuses
	// others): short ASCII, safe to name.
	if !slices.ContainsFunc(algorithms, func(x jwa.SignatureAlgorithm) bool { return x.String() == alg.String() }) {
		return nil, unauthenticated("the token's algorithm %s does not match any trusted key (this server verifies HS256, RS256, ES256 and EdDSA only)", alg)
	}
	keys := a.keysFor(alg)
	if len(keys) == 0 {
		return nil, unauthenticated("the token's algorithm %s does not match any trusted key", alg)
	}
	tok, err := jwt.ParseString(token,
		jwt.WithKeyProvider(algKeys{alg: alg, keys: keys}),
		jwt.WithValidate(false),
		jwt.WithTypedClaim(ClaimName, grantsDecoder{}),
		jwt.WithContext(ctx))
	switch {
	case errors.Is(err, jws.VerifyError()):
		return nil, unauthenticated("the token's signature does not match any trusted %s key", alg)
	case err != nil:
		return nil, unauthenticated("the token's claims are not valid JWT claims")
	}
	if _, ok := tok.Expiration(); !ok && !a.cfg.AllowNoExp {
		return nil, unauthenticated("the token has no exp claim (this server accepts only tokens that expire)")
	}
	if err := jwt.Validate(tok, a.validateOpt...); err != nil {
		return nil, unauthenticated("%s", describe(err))
	}
	return tok, nil
}

// keysFor returns the trusted keys whose algorithm is alg: the static keys
// pinned by addKey, and those of the JWKS from the URL that declare it. A
// key of the URL's JWKS without alg is never used.
func (a *Authenticator) keysFor(alg jwa.SignatureAlgorithm) []jwk.Key {
	var keys []jwk.Key
	sets := []jwk.Set{a.static}
	if a.remote != nil {
		// A snapshot: the cache may swap in a refreshed set meanwhile.
		if set, err := a.remote.Clone(); err == nil {
			sets = append(sets, set)
		}
	}
	for _, set := range sets {
		for i := range set.Len() {
			k, ok := set.Key(i)
			if !ok {
				continue
			}
			if use, ok := k.KeyUsage(); ok && use != "" && use != jwk.ForSignature.String() {
				continue
			}
			if ka, ok := k.Algorithm(); ok && ka.String() == alg.String() {
				keys = append(keys, k)
			}
		}
	}
	return keys
}

// algKeys offers keys for verification under the algorithm that the
// token's protected header names and that the keys were chosen for. With a
// key set, jwx would verify under each key's own alg whatever the header
// says (jws.WithAlgorithmMatch, which is not reachable through jwt.Parse,
// lets a header without alg through), so that a token claiming none or
// HS512 over an HS256 signature would pass.
type algKeys struct {
	alg  jwa.SignatureAlgorithm
	keys []jwk.Key
}

func (p algKeys) FetchKeys(_ context.Context, sink jws.KeySink, sig *jws.Signature, _ *jws.Message) error {
	if alg, ok := sig.ProtectedHeaders().Algorithm(); !ok || alg.String() != p.alg.String() {
		return errors.New("the signature's alg is not the one its keys were chosen for")
	}
	for _, k := range p.keys {
		sink.Key(p.alg, k)
	}
	return nil
}

func unauthenticated(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{auth.ErrUnauthenticated}, args...)...)
}

// describe names what is wrong with the claims of a well-signed token.
func describe(err error) string {
	switch {
	case errors.Is(err, jwt.TokenExpiredError()):
		return "the token has expired"
	case errors.Is(err, jwt.TokenNotYetValidError()):
		return "the token is not valid yet: nbf is in the future"
	case errors.Is(err, jwt.InvalidIssuedAtError()):
		return "the token is not valid yet: iat is in the future"
	case errors.Is(err, jwt.InvalidIssuerError()):
		return "the token's issuer is not the one this server expects"
	case errors.Is(err, jwt.InvalidAudienceError()):
		return "the token's audience is not this server"
	}
	return "the token's claims are not valid"
}

func patterns(list []string) ([]broker.Pattern, error) {
	out := make([]broker.Pattern, 0, len(list))
	for _, s := range list {
		p, err := broker.ParsePattern(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
