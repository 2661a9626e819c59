package bridge

import (
	"net"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// A hangups watches the connections taken over from net/http for their
// clients going away, without a goroutine per connection: SSE clients send
// nothing after their request, so what there is to notice is the peer's
// FIN (EPOLLRDHUP) or a reset (EPOLLHUP, EPOLLERR, always reported). The
// connections are registered in an epoll instance of their own (a socket
// may be in several), and that instance is itself a file in Go's poller, so
// one goroutine sleeps on all of them without holding a thread. A client
// that does send something is not read, as net/http does not read it
// either; its leaving still shows.
//
// The watcher runs while it has connections: the last one forgotten closes
// the epoll instance and its goroutine ends, and the next one watched
// starts another.
type hangups struct {
	hub *Hub

	mu    sync.Mutex
	ep    *epoll // nil when nothing is watched
	next  uint64
	conns map[uint64]*subscriber
}

// An epoll is one epoll instance and its file in Go's poller.
type epoll struct {
	fd   int
	file *os.File
	raw  syscall.RawConn
}

// watch registers conn, whose stream is s's: its client leaving drops s
// with dropGone. It returns the key to forget it with; 0 when conn could
// not be registered, and then a goroutine blocked in Read watches it
// instead, as on systems without epoll.
func (w *hangups) watch(conn net.Conn, s *subscriber) uint64 {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		watchByReading(w.hub, conn, s)
		return 0
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		watchByReading(w.hub, conn, s)
		return 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ep == nil {
		ep, err := newEpoll()
		if err != nil {
			watchByReading(w.hub, conn, s)
			return 0
		}
		w.ep = ep
		w.conns = make(map[uint64]*subscriber)
		go w.run(ep)
	}
	w.next++
	key := w.next
	// One-shot: a hang-up is reported once, and the connection stays in
	// the instance, disabled, until forget takes it out or its closing
	// does.
	ev := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(key), Pad: int32(key >> 32)}
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cerr = unix.EpollCtl(w.ep.fd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	}); err != nil || cerr != nil {
		w.closeIfIdle()
		watchByReading(w.hub, conn, s)
		return 0
	}
	w.conns[key] = s
	return key
}

// forget stops watching conn, before it is closed, so that its descriptor's
// number, once reused, names nothing here.
func (w *hangups) forget(key uint64, conn net.Conn) {
	if key == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.conns[key]; !ok {
		return // the watcher dropped it already
	}
	delete(w.conns, key)
	if raw, err := conn.(syscall.Conn).SyscallConn(); err == nil {
		_ = raw.Control(func(fd uintptr) {
			_ = unix.EpollCtl(w.ep.fd, unix.EPOLL_CTL_DEL, int(fd), nil)
		})
	}
	w.closeIfIdle()
}

// closeIfIdle lets the epoll instance go when nothing is watched; with w.mu
// held. Its goroutine's wait then fails and it ends.
func (w *hangups) closeIfIdle() {
	if len(w.conns) == 0 && w.ep != nil {
		_ = w.ep.file.Close()
		w.ep, w.conns = nil, nil
	}
}

// run waits for hang-ups on ep until ep is closed, and drops the
// subscribers of the connections that hung up.
func (w *hangups) run(ep *epoll) {
	events := make([]unix.EpollEvent, 64)
	var gone []*subscriber
	for {
		var n int
		err := ep.raw.Read(func(fd uintptr) bool {
			var werr error
			for {
				n, werr = unix.EpollWait(int(fd), events, 0)
				if werr != unix.EINTR {
					break
				}
			}
			// Nothing ready: wait in the poller for the instance to
			// become readable. Go's poller is edge-triggered, so this
			// waits only once every event has been taken.
			return werr != nil || n > 0
		})
		if err != nil || n < 0 {
			return // closed: nothing left to watch
		}
		w.mu.Lock()
		if w.ep != ep {
			w.mu.Unlock()
			return
		}
		for _, ev := range events[:n] {
			key := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			s, ok := w.conns[key]
			if !ok {
				continue
			}
			delete(w.conns, key)
			gone = append(gone, s)
		}
		w.closeIfIdle()
		w.mu.Unlock()
		for i, s := range gone {
			// Its stream closes the connection, which takes it out of
			// the epoll instance.
			w.hub.drop(s, dropGone)
			gone[i] = nil
		}
		gone = gone[:0]
	}
}

func newEpoll() (*epoll, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	// A non-blocking descriptor: os.NewFile puts it in Go's poller.
	file := os.NewFile(uintptr(fd), "hangups")
	raw, err := file.SyscallConn()
	if err != nil {
		_ = file.Close()
		return nil, err
	}
	return &epoll{fd: fd, file: file, raw: raw}, nil
}
