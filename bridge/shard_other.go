//go:build !unix

package bridge

import (
	"errors"
	"net"
)

// attach reports false: without a non-blocking write(2) at hand, every
// stream keeps its goroutine and queue.
func (d *direct) attach(net.Conn) bool { return false }

// tryWrite is never called, since attach never succeeds here.
func (d *direct) tryWrite([]byte) (int, error) { return 0, errors.ErrUnsupported }
