package broker

import (
	"crypto/rand"
	"strings"
)

// NewEpoch returns a new random epoch for a log that starts empty: 10
// characters of [a-z2-7], 50 bits from crypto/rand, so that two logs
// practically never share an epoch and an id of one never resumes on the
// other.
func NewEpoch() string {
	return strings.ToLower(rand.Text()[:10])
}
