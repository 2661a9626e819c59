package bridge_test

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/proto"

	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/heraldtest"
)

// TestPublishStreamStartsNoBandwidthProbes speaks HTTP/2 frame by frame
// to the gRPC listener, publishing one small event at a time over
// PublishStream and answering every PING, as a publisher's transport
// does. The listener must grant its fixed 1 MiB stream window up front
// and never probe the link: with grpc-go's dynamic window, each event
// that arrives after the last probe was answered starts another, a
// WINDOW_UPDATE and a PING written and an answer read, which on a
// stream of small events is one more round of writes per publish.
func TestPublishStreamStartsNoBandwidthProbes(t *testing.T) {
	s := heraldtest.Start(t, heraldtest.Options{})
	conn, err := net.Dial("tcp", s.GRPCAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":authority", s.GRPCAddr},
		{":path", "/herald.v1.PublisherService/PublishStream"},
		{"content-type", "application/grpc"}, {"te", "trailers"},
	} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}

	const events = 20
	var streamWindow uint32
	pings, updates, answered := 0, 0, 0
	for sent := 0; answered < events; {
		if sent == answered {
			// One event in flight at a time, each in its own DATA frame.
			msg, err := proto.Marshal(request(t, "window.probe", &chatv1.ChatMessage{Text: "one small event"}))
			if err != nil {
				t.Fatal(err)
			}
			frame := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
			if err := fr.WriteData(1, false, append(frame, msg...)); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("after %d answers: %v", answered, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				continue
			}
			if v, ok := f.Value(http2.SettingInitialWindowSize); ok {
				streamWindow = v
			}
			if err := fr.WriteSettingsAck(); err != nil {
				t.Fatal(err)
			}
		case *http2.PingFrame:
			if f.IsAck() {
				continue
			}
			pings++
			if err := fr.WritePing(true, f.Data); err != nil {
				t.Fatal(err)
			}
		case *http2.WindowUpdateFrame:
			if answered > 0 { // not the connection window granted up front
				updates++
			}
		case *http2.DataFrame:
			var resp heraldv1.PublishResponse
			if d := f.Data(); len(d) < 5 || proto.Unmarshal(d[5:], &resp) != nil || resp.GetId() == "" {
				t.Fatalf("answer %d is not a PublishResponse with an id: %q", answered+1, d)
			}
			answered++
		case *http2.RSTStreamFrame, *http2.GoAwayFrame:
			t.Fatalf("after %d answers the server ended the stream: %v", answered, f)
		}
	}
	if streamWindow != 1<<20 {
		t.Errorf("the listener granted a stream window of %d bytes, want 1 MiB", streamWindow)
	}
	if pings != 0 {
		t.Errorf("the listener sent %d PINGs over %d publishes; want none", pings, events)
	}
	if updates != 0 {
		t.Errorf("the listener sent %d WINDOW_UPDATEs over %d small publishes; want none", updates, events-1)
	}
}
