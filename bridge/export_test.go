package bridge

import "time"

// SetStreamSendBuffer makes every stream taken over from now on use a
// socket send buffer of n bytes (0: the system's), so that tests can fill
// it quickly; it returns a function that restores the default.
func SetStreamSendBuffer(n int) (restore func()) {
	streamSendBuffer.Store(int64(n))
	return func() { streamSendBuffer.Store(0) }
}

// ThroughShards is how many shards write HTTP/2 and TLS streams on a node
// of cores cores.
func ThroughShards(cores int) int { return throughShards(cores) }

// SetFollowRetry sets how long a hub waits after a failed try to subscribe
// to the broker; it returns a function that restores the default.
func SetFollowRetry(d time.Duration) (restore func()) {
	old := followRetry.Swap(int64(d))
	return func() { followRetry.Store(old) }
}
