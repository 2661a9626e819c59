package jetstream

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// SaveSchemas implements broker.SchemaStore: one message on the schema
// stream, acknowledged before it returns.
func (b *Broker) SaveSchemas(ctx context.Context, set []byte) error {
	return b.link.Call(ctx, "save schemas", func(ctx context.Context) error {
		msg := nats.NewMsg(b.schemaSubj)
		msg.Data = set
		_, err := b.js.PublishMsg(ctx, msg)
		return err
	})
}

// LoadSchemas implements broker.SchemaStore. Registrations are the schema
// stream's messages in sequence order; the stream keeps them all.
func (b *Broker) LoadSchemas(ctx context.Context, skip int) ([][]byte, error) {
	var sets [][]byte
	err := b.link.Call(ctx, "load schemas", func(ctx context.Context) error {
		info, err := b.schemas.Info(ctx)
		if err != nil {
			return err
		}
		n, seq := 0, info.State.FirstSeq
		if info.State.NumDeleted == 0 && skip > 0 {
			// Registration i is at FirstSeq+i: start at the first one wanted.
			n, seq = skip, seq+uint64(skip)
		}
		for ; seq > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := b.schemas.GetMsg(ctx, seq)
			if errors.Is(err, natsjs.ErrMsgNotFound) {
				continue // deleted by an operator: not a registration any more
			}
			if err != nil {
				return err
			}
			if n++; n > skip {
				sets = append(sets, m.Data)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return sets, nil
}
