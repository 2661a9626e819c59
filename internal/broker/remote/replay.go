package remote

import (
	"context"

	"github.com/heraldhq/herald/internal/broker"
)

// Replay is what every backend's Broker.Replay shares: it begins the call
// as Begin does, turns a position of another epoch than epoch into Seq 0
// and Truncated (the subscriber may have missed anything), returns nothing
// for no patterns, and otherwise has read find the retained events with
// Seq > from on topics matching the patterns. read sets res.Events, in
// Seq order, and sets res.Truncated when such an event was removed (it
// never clears it); its error is returned as it is, with no result.
func (l *Link) Replay(ctx context.Context, epoch string, patterns []broker.Pattern, after broker.EventID,
	read func(ctx context.Context, from uint64, res *broker.ReplayResult) error) (broker.ReplayResult, error) {
	var res broker.ReplayResult
	ctx, cancel, err := l.Begin(ctx)
	defer cancel()
	if err != nil {
		return res, err
	}
	from := after.Seq
	if after.Epoch != epoch {
		res.Truncated = after.Seq > 0 || after.Epoch != ""
		from = 0
	}
	if len(patterns) == 0 {
		return res, nil
	}
	if err := read(ctx, from, &res); err != nil {
		return broker.ReplayResult{}, err
	}
	return res, nil
}
