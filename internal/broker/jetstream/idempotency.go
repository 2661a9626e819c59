package jetstream

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/internal/broker"
)

// fingerprintHeader carries the Fingerprint of an event published with an
// idempotency key, for its duplicates to report.
const fingerprintHeader = "Herald-Fingerprint"

// msgGetSubject is the stream's leader-served get of one message (the
// API prefix is natsjs's default, as New uses).
const msgGetSubject = natsjs.DefaultAPIPrefix + "STREAM.MSG.GET."

// fingerprintOf returns the Fingerprint stored with the message at seq on
// topic, the original of a duplicate with idempotency key key, or "" when
// the stream no longer holds it (count retention removed it within the
// Duplicates window) or holds it without one; it fails when the message
// is another topic's. It asks the stream's leader rather than making a
// direct get, which any replica may answer: one that has not applied the
// original yet would say it is gone, and a retry comes soonest after the
// original was accepted.
func (b *Broker) fingerprintOf(ctx context.Context, topic, key string, seq uint64) (string, error) {
	reply, err := b.nc.RequestWithContext(ctx, msgGetSubject+b.streamName, fmt.Appendf(nil, `{"seq":%d}`, seq))
	if err != nil {
		return "", b.link.Fail(ctx, "publish: original of a duplicate", err)
	}
	var res struct {
		Message *struct {
			Subject string `json:"subject"`
			Header  []byte `json:"hdrs"`
		} `json:"message"`
		Error *natsjs.APIError `json:"error"`
	}
	if err := json.Unmarshal(reply.Data, &res); err != nil {
		return "", b.link.Fail(ctx, "publish: original of a duplicate", err)
	}
	switch {
	case res.Error != nil && res.Error.ErrorCode == natsjs.JSErrCodeMessageNotFound:
		return "", nil
	case res.Error != nil:
		return "", b.link.Fail(ctx, "publish: original of a duplicate", res.Error)
	case res.Message == nil:
		return "", b.link.Fail(ctx, "publish: original of a duplicate", natsjs.ErrInvalidJetStreamResponse)
	case res.Message.Subject != b.subjPrefix+topic:
		// A key's messages are all on its topic's subject (its message
		// id names the topic), so the stream holds something that Herald
		// did not write: answering with this sequence would give the
		// event another topic's id.
		return "", fmt.Errorf("%w: the stream answered key %q of topic %s as a duplicate of sequence %d, which is on subject %s; it holds messages that Herald did not append",
			broker.ErrUnavailable, key, topic, seq, res.Message.Subject)
	case len(res.Message.Header) == 0:
		return "", nil
	}
	h, err := nats.DecodeHeadersMsg(res.Message.Header)
	if err != nil {
		return "", nil // not one of ours to read; it can tell nothing
	}
	return h.Get(fingerprintHeader), nil
}
