package redis

import "context"

// SaveSchemas implements broker.SchemaStore.
func (b *Broker) SaveSchemas(ctx context.Context, set []byte) error {
	return b.link.Call(ctx, "save schemas", func(ctx context.Context) error {
		return b.rdb.RPush(ctx, b.keys.schemas, set).Err()
	})
}

// LoadSchemas implements broker.SchemaStore.
func (b *Broker) LoadSchemas(ctx context.Context, skip int) ([][]byte, error) {
	var vals []string
	err := b.link.Call(ctx, "load schemas", func(ctx context.Context) (err error) {
		vals, err = b.rdb.LRange(ctx, b.keys.schemas, int64(skip), -1).Result()
		return err
	})
	if err != nil {
		return nil, err
	}
	sets := make([][]byte, len(vals))
	for i, v := range vals {
		sets[i] = []byte(v)
	}
	return sets, nil
}
