package main

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"google.golang.org/protobuf/types/known/anypb"
)

// What scenario 7 sends: payloads that cost a server without depth bounds
// seconds of CPU each, and the token that lets some of them past
// authentication. Each is built once per run and shared, read-only, by
// every request of its kind, so that the harness's own cost per request is
// a write of bytes it already has.

const (
	anyURL    = "type.googleapis.com/google.protobuf.Any"
	structURL = "type.googleapis.com/google.protobuf.Struct"
	emptyURL  = "type.googleapis.com/google.protobuf.Empty"
)

// nestedAnyJSONBody returns a REST publish body whose payload is depth
// google.protobuf.Any values, each the value of the one around it, around
// a google.protobuf.Struct: 60 bytes a level. protojson decodes an Any's
// value once for every level around it, so without a depth bound the cost
// grows with the square of the body's size.
func nestedAnyJSONBody(depth int) []byte {
	const open = `{"@type":"` + anyURL + `","value":`
	const inner = `{"@type":"` + structURL + `","value":{"x":"y"}}`
	var b strings.Builder
	b.Grow(len(`{"payload":}`) + depth*(len(open)+1) + len(inner))
	b.WriteString(`{"payload":`)
	for range depth {
		b.WriteString(open)
	}
	b.WriteString(inner)
	b.WriteString(strings.Repeat("}", depth+1))
	return []byte(b.String())
}

// nestedAnyBinary returns a google.protobuf.Any of google.protobuf.Any
// values nested as deep as fits in size bytes (its serialized size), around
// an empty google.protobuf.Empty, and how deep that is, counting both ends.
// The bytes are written outside in, into one buffer, after the length of
// every level is known: wrapping level by level would copy the payload
// once a level.
func nestedAnyBinary(size int) (*anypb.Any, int) {
	// An Any is field 1, type_url (tag 0x0a), and field 2, value (tag
	// 0x12), each a varint length and the bytes.
	innermost := append([]byte{0x0a, byte(len(emptyURL))}, emptyURL...)
	level := func(inner int) int { return 2 + len(anyURL) + 1 + varintLen(uint64(inner)) + inner }
	lens := []int{len(innermost)}
	for level(level(lens[len(lens)-1])) <= size { // room for this level and the outermost
		lens = append(lens, level(lens[len(lens)-1]))
	}
	buf := make([]byte, 0, lens[len(lens)-1])
	for k := len(lens) - 1; k >= 1; k-- {
		buf = append(buf, 0x0a, byte(len(anyURL)))
		buf = append(buf, anyURL...)
		buf = append(buf, 0x12)
		buf = binary.AppendUvarint(buf, uint64(lens[k-1]))
	}
	buf = append(buf, innermost...)
	return &anypb.Any{TypeUrl: anyURL, Value: buf}, len(lens) + 1
}

func varintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// unknownFieldsQuery is the query of an SSE subscription to topic with n
// distinct field paths that no type has.
func unknownFieldsQuery(topic string, n int) string {
	paths := make([]string, n)
	for i := range paths {
		paths[i] = "no_such_field_" + strconv.Itoa(i)
	}
	return url.Values{"topic": {topic}, "fields": {strings.Join(paths, ",")}}.Encode()
}

// writeSecret writes a new random HS256 secret (48 bytes, hex: printable,
// so that no server trims any of it) to a file in dir.
func writeSecret(dir string) (path string, secret []byte, err error) {
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", nil, err
	}
	secret = []byte(hex.EncodeToString(raw))
	path = filepath.Join(dir, "hostile.secret")
	return path, secret, os.WriteFile(path, secret, 0o600)
}

// mintToken signs an HS256 token with Herald's claim granting publish and
// subscribe, valid for ttl.
func mintToken(secret []byte, publish, subscribe []string, ttl time.Duration) (string, error) {
	grants := map[string][]string{"publish": append([]string{}, publish...), "subscribe": append([]string{}, subscribe...)}
	now := time.Now()
	tok, err := jwt.NewBuilder().Subject("herald-bench").IssuedAt(now).Expiration(now.Add(ttl)).Claim("herald", grants).Build()
	if err != nil {
		return "", err
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.HS256(), secret))
	if err != nil {
		return "", fmt.Errorf("signing: %w", err)
	}
	return string(signed), nil
}
