//go:build !linux

package bridge

import "net"

// hangups watches the connections taken over from net/http for their
// clients going away: here with a goroutine per connection blocked in Read
// (hangup_linux.go does it with none).
type hangups struct{ hub *Hub }

func (w *hangups) watch(conn net.Conn, s *subscriber) uint64 {
	watchByReading(w.hub, conn, s)
	return 0
}

func (w *hangups) forget(uint64, net.Conn) {}
