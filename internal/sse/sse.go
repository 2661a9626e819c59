// Package sse writes the Server-Sent Events wire format (WHATWG HTML,
// "Server-sent events"). It knows nothing of topics or brokers: it turns an
// id, an event name and a payload into frame bytes that every conforming
// EventSource parses back to exactly those values.
//
// The Append functions never emit a raw CR, LF or NUL inside a field, so no
// input can inject a field or a fake event: data is split into one "data:"
// line per input line, and id, event name and comment text are checked by
// ValidID, ValidEventName and sanitized defensively when a caller did not.
package sse

import (
	"errors"
	"strconv"
)

// MaxIDLen is the longest id Herald writes. Longer ids make browsers send an
// oversized Last-Event-ID header, which can force a CORS preflight.
const MaxIDLen = 128

// MaxEventNameLen is the longest event name Herald writes.
const MaxEventNameLen = 128

var (
	// ErrEmpty reports an empty id or event name.
	ErrEmpty = errors.New("is empty")
	// ErrTooLong reports an id or event name over its length limit.
	ErrTooLong = errors.New("is too long")
	// ErrBadChar reports a character outside the allowed set.
	ErrBadChar = errors.New("has a character that is not allowed")
)

// ValidID reports whether s can be written as an SSE id: 1 to MaxIDLen bytes
// of CORS-safe printable ASCII (letters, digits and "-._~:").
func ValidID(s string) error {
	if s == "" {
		return ErrEmpty
	}
	if len(s) > MaxIDLen {
		return ErrTooLong
	}
	for i := 0; i < len(s); i++ {
		if !idChar(s[i]) {
			return ErrBadChar
		}
	}
	return nil
}

// ValidEventName reports whether s is a plain event-name token: 1 to
// MaxEventNameLen bytes of letters, digits and "-._:".
func ValidEventName(s string) error {
	if s == "" {
		return ErrEmpty
	}
	if len(s) > MaxEventNameLen {
		return ErrTooLong
	}
	for i := 0; i < len(s); i++ {
		if !eventChar(s[i]) {
			return ErrBadChar
		}
	}
	return nil
}

func eventChar(c byte) bool { return c != '~' && idChar(c) }

func idChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~' || c == ':'
}

// AppendEvent appends one complete event frame to dst and returns the
// extended slice:
//
//	id: <id>\n          (omitted when id is empty)
//	event: <name>\n     (omitted when name is empty; the client then sees "message")
//	data: <line>\n      (one per line of data; at least one)
//	\n
//
// data is split on CRLF, CR and LF. Characters in id and name that
// ValidID/ValidEventName would refuse are dropped, never written.
func AppendEvent(dst []byte, id, name string, data []byte) []byte {
	if id != "" {
		dst = appendField(dst, "id: ", id, idChar)
	}
	if name != "" {
		dst = appendField(dst, "event: ", name, eventChar)
	}
	dst = appendData(dst, data)
	return append(dst, '\n')
}

// AppendID appends an id-only block, which moves the client's resume point
// (Last-Event-ID) without firing an event.
func AppendID(dst []byte, id string) []byte {
	return append(appendField(dst, "id: ", id, idChar), '\n')
}

// AppendRetry appends a "retry:" line asking the client to wait ms
// milliseconds before reconnecting. Clients apply it as soon as they parse
// the line. No blank line follows: a block holding no data dispatches
// nothing in a browser, but some clients (go-sse) surface it as an empty
// event, so Herald never ends a block that has no data.
func AppendRetry(dst []byte, ms int64) []byte {
	if ms < 0 {
		ms = 0
	}
	dst = append(dst, "retry: "...)
	dst = strconv.AppendInt(dst, ms, 10)
	return append(dst, '\n')
}

// AppendComment appends a comment line (": text\n"). Clients ignore
// comments; they keep proxies from timing out an idle stream. Like
// AppendRetry it ends no block. CR, LF and NUL in text are replaced by
// spaces.
func AppendComment(dst []byte, text string) []byte {
	dst = append(dst, ':')
	if text != "" {
		dst = append(dst, ' ')
		for i := 0; i < len(text); i++ {
			c := text[i]
			if c == '\r' || c == '\n' || c == 0 {
				c = ' '
			}
			dst = append(dst, c)
		}
	}
	return append(dst, '\n')
}

// appendField writes "<key><value>\n" with the bytes of value that allowed
// accepts. A non-empty value of which nothing is left writes nothing: an
// empty id would reset the client's resume point.
func appendField(dst []byte, key, value string, allowed func(byte) bool) []byte {
	start := len(dst)
	dst = append(dst, key...)
	n := len(dst)
	for i := 0; i < len(value); i++ {
		if allowed(value[i]) {
			dst = append(dst, value[i])
		}
	}
	if len(dst) == n && value != "" {
		return dst[:start]
	}
	return append(dst, '\n')
}

// appendData writes data as "data: " lines. The single space after the colon
// is what a parser strips, so a line that itself starts with a space
// survives. A NUL is legal in data and passes through unchanged.
func appendData(dst, data []byte) []byte {
	for {
		dst = append(dst, "data: "...)
		i := 0
		for i < len(data) && data[i] != '\n' && data[i] != '\r' {
			i++
		}
		dst = append(dst, data[:i]...)
		dst = append(dst, '\n')
		if i == len(data) {
			return dst
		}
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
}
