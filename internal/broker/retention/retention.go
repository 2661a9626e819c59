// Package retention holds the retention settings that every backend takes
// (how many events a topic keeps, for how long, and how long an
// idempotency key is remembered), so that their defaults are the same
// whichever backend a node runs (cmd/herald documents one set for all).
package retention

import "time"

// Defaults of the settings.
const (
	DefaultMaxEvents         = 1000
	DefaultMaxAge            = time.Hour
	DefaultIdempotencyWindow = 2 * time.Minute
)

// Default gives each setting that is zero or negative its default.
func Default(maxEvents *int, maxAge, idempotencyWindow *time.Duration) {
	if *maxEvents <= 0 {
		*maxEvents = DefaultMaxEvents
	}
	if *maxAge <= 0 {
		*maxAge = DefaultMaxAge
	}
	if *idempotencyWindow <= 0 {
		*idempotencyWindow = DefaultIdempotencyWindow
	}
}
