package broker

import (
	"regexp"
	"testing"
)

func TestNewEpoch(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z0-9]{1,32}$`)
	seen := make(map[string]bool)
	for range 1000 {
		e := NewEpoch()
		if !valid.MatchString(e) {
			t.Fatalf("NewEpoch() = %q; want 1 to 32 bytes of [a-z0-9]", e)
		}
		if seen[e] {
			t.Fatalf("NewEpoch() returned %q twice", e)
		}
		seen[e] = true
	}
}
