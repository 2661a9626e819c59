package jetstream

import (
	"errors"
	"testing"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// The stream's answers as nats-server 2.15 writes them.
func TestParseAck(t *testing.T) {
	for _, c := range []struct {
		data string
		want ack
	}{
		{`{"stream":"HERALD","seq":7}`, ack{seq: 7}},
		{`{"stream":"HERALD","seq":18446744073709551615,"duplicate":true}`, ack{seq: 1<<64 - 1, duplicate: true}},
		{`{"stream":"HERALD","domain":"hub","seq":3,"batch":"x","count":3}`, ack{seq: 3}},
	} {
		got, err := parseAck([]byte(c.data))
		if err != nil || got != c.want {
			t.Errorf("parseAck(%s) = %+v, %v; want %+v", c.data, got, err, c.want)
		}
	}

	_, err := parseAck([]byte(`{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 5"},"stream":"HERALD","seq":0}`))
	var apiErr *natsjs.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != natsjs.JSErrCodeStreamWrongLastSequence || apiErr.Code != 400 || apiErr.Description != "wrong last sequence: 5" {
		t.Errorf("an error answer gave %#v, want the APIError it names", err)
	}

	for _, bad := range []string{``, `{`, `[]`, `{"seq":1}`, `{"stream":"HERALD"}`, `{"stream":"HERALD","seq":-1}`, `{"stream":"HERALD","seq":"1"}`} {
		if _, err := parseAck([]byte(bad)); !errors.Is(err, natsjs.ErrInvalidJetStreamResponse) {
			t.Errorf("parseAck(%q) = %v, want ErrInvalidJetStreamResponse", bad, err)
		}
	}
}
