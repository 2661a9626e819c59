package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/schema"
)

// Events are chat.v1.ChatMessage payloads whose message_id carries the
// per-topic sequence number and the send time, fixed-width so that every
// event of a run has the same size:
//
//	{"room":"bench.t00042","messageId":"0000000017.1767225600123456789","author":"herald-bench","text":"xxxx…"}
//
// text pads the JSON to the payload size. The client finds the seq and the
// stamp with a scan for "messageId", never a JSON decode.
const (
	eventType = "chat.v1.ChatMessage"
	author    = "herald-bench"
)

// writeSchemas writes the payload's schema as a descriptor set file in dir.
// chat.v1 is an example schema, which a node knows by itself only with
// --demo, whose own events would skew the figures.
func writeSchemas(dir string) (string, error) {
	raw, err := proto.Marshal(schema.DescriptorSet(chatv1.File_chat_v1_chat_proto))
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "chat.binpb")
	return path, os.WriteFile(path, raw, 0o600)
}

func topicName(i int) string { return fmt.Sprintf("bench.t%05d", i) }

// topicNames returns the first n topics' names.
func topicNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = topicName(i)
	}
	return names
}

// messageID formats seq and the send time.
func messageID(dst []byte, seq uint64, stamp int64) []byte {
	dst = appendPadded(dst, seq, 10)
	dst = append(dst, '.')
	return appendPadded(dst, uint64(stamp), 19)
}

func appendPadded(dst []byte, v uint64, width int) []byte {
	var tmp [20]byte
	s := strconv.AppendUint(tmp[:0], v, 10)
	for i := len(s); i < width; i++ {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}

// padding returns the text that makes an event's JSON size bytes long on a
// topic of topicName's length.
func padding(size int) string {
	base := len(`{"room":"`) + len(topicName(0)) + len(`","messageId":"`) + 30 +
		len(`","author":"`) + len(author) + len(`","text":"`) + len(`"}`)
	return strings.Repeat("x", max(size-base, 1))
}

// appendJSON appends the JSON Herald renders for the event (without the
// random spaces protojson may add), for the floor's frames.
func appendJSON(dst []byte, topic string, seq uint64, stamp int64, text string) []byte {
	dst = append(dst, `{"room":"`...)
	dst = append(dst, topic...)
	dst = append(dst, `","messageId":"`...)
	dst = messageID(dst, seq, stamp)
	dst = append(dst, `","author":"`...)
	dst = append(dst, author...)
	dst = append(dst, `","text":"`...)
	dst = append(dst, text...)
	return append(dst, `"}`...)
}

// appendFrame appends the SSE frame the floor writes for an event: the
// same fields Herald writes.
func appendFrame(dst []byte, n uint64, topic string, seq uint64, stamp int64, text string) []byte {
	dst = append(dst, "id: floor-"...)
	dst = strconv.AppendUint(dst, n, 10)
	dst = append(dst, "\nevent: "+eventType+"\ndata: "...)
	dst = appendJSON(dst, topic, seq, stamp, text)
	return append(dst, "\n\n"...)
}

// publishRequest builds the gRPC request for an event.
func publishRequest(topic string, seq uint64, stamp int64, text string) (*heraldv1.PublishRequest, error) {
	msg := &chatv1.ChatMessage{Room: topic, MessageId: string(messageID(make([]byte, 0, 30), seq, stamp)), Author: author, Text: text}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return nil, err
	}
	return &heraldv1.PublishRequest{
		Topic:   topic,
		Payload: &anypb.Any{TypeUrl: "type.googleapis.com/" + eventType, Value: b},
	}, nil
}

var messageIDKey = []byte(`"messageId":`)

// scanPayload finds the seq and the send stamp in an event's JSON.
func scanPayload(data []byte) (seq uint64, stamp int64, ok bool) {
	i := bytes.Index(data, messageIDKey)
	if i < 0 {
		return 0, 0, false
	}
	data = data[i+len(messageIDKey):]
	for len(data) > 0 && data[0] == ' ' {
		data = data[1:]
	}
	if len(data) == 0 || data[0] != '"' {
		return 0, 0, false
	}
	data = data[1:]
	seq, data, ok = scanUint(data)
	if !ok || len(data) == 0 || data[0] != '.' {
		return 0, 0, false
	}
	st, data, ok := scanUint(data[1:])
	if !ok || len(data) == 0 || data[0] != '"' {
		return 0, 0, false
	}
	return seq, int64(st), true
}

func scanUint(b []byte) (uint64, []byte, bool) {
	var v uint64
	i := 0
	for ; i < len(b) && i < 20 && '0' <= b[i] && b[i] <= '9'; i++ {
		v = v*10 + uint64(b[i]-'0')
	}
	return v, b[i:], i > 0
}
