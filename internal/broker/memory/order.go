package memory

// A ref names a retained event by its topic's log and its Seq, not by
// pointer, so that an entry left behind by a removed event holds none of
// its memory.
type ref struct {
	t   *topicLog
	seq uint64
}

// refQueue is a FIFO of refs in a ring buffer that grows by doubling.
type refQueue struct {
	buf  []ref
	head int
	n    int
}

func (q *refQueue) len() int { return q.n }

func (q *refQueue) push(r ref) {
	if q.n == len(q.buf) {
		grown := make([]ref, max(2*len(q.buf), 16))
		for i := range q.n {
			grown[i] = q.at(i)
		}
		q.buf, q.head = grown, 0
	}
	q.buf[q.index(q.n)] = r
	q.n++
}

// index is where the ring holds its i'th ref: a wrap, not a division,
// which would cost as much as the rest of a push.
func (q *refQueue) index(i int) int {
	if i += q.head; i >= len(q.buf) {
		i -= len(q.buf)
	}
	return i
}

func (q *refQueue) at(i int) ref { return q.buf[q.index(i)] }

func (q *refQueue) front() ref { return q.buf[q.head] }

func (q *refQueue) pop() ref {
	r := q.buf[q.head]
	q.buf[q.head] = ref{}
	q.head = q.index(1)
	q.n--
	return r
}

// compact keeps the refs for which keep holds, in order, in a ring of
// size (or more, if more are kept).
func (q *refQueue) compact(keep func(ref) bool, size int) {
	kept := make([]ref, 0, max(size, 16))
	for i := range q.n {
		if r := q.at(i); keep(r) {
			kept = append(kept, r)
		}
	}
	q.buf, q.head, q.n = kept[:cap(kept)], 0, len(kept)
}
