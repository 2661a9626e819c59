//go:build unix

package bridge

import (
	"net"
	"syscall"
)

// attach gives d its connection. It reports false when the connection
// cannot be written without blocking (it is not a plain socket); the
// subscriber then stays with its queue.
func (d *direct) attach(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	d.raw = raw
	d.writeFn = d.rawWrite
	return true
}

// tryWrite writes as much of b as the socket takes now, without waiting.
func (d *direct) tryWrite(b []byte) (int, error) {
	d.wbuf = b
	err := d.raw.Write(d.writeFn)
	d.wbuf = nil
	if err != nil {
		return 0, err
	}
	return d.wn, d.werr
}

func (d *direct) rawWrite(fd uintptr) bool {
	for {
		n, err := syscall.Write(int(fd), d.wbuf)
		if err == syscall.EINTR {
			continue
		}
		if n < 0 {
			n = 0
		}
		if err == syscall.EAGAIN {
			err = nil
		}
		d.wn, d.werr = n, err
		return true
	}
}
