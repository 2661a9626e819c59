package schema

import (
	"hash/maphash"
	"iter"
	"maps"
)

// cowShards is the number of shards of a cowMap: a write copies one shard,
// about 1/cowShards of the map.
const cowShards = 256

var cowSeed = maphash.MakeSeed()

// A cowMap is a map that a clone shares with its original until one of
// them writes: a write copies the shard that holds the key, not the map,
// so that a change to a snapshot costs what it changes and not the size of
// the registry. The zero value is an empty map.
//
// Ownership: a cowMap is written only through the private snapshot that
// holds it (clone gives each copy its own writable shards); once that
// snapshot is published it is only read, and any number of goroutines may
// read it.
type cowMap[K comparable, V any] struct {
	shards [cowShards]map[K]V
	owned  [cowShards / 64]uint64 // shards this copy made, which it may write in place
	n      int
}

func shardOf[K comparable](k K) int {
	return int(maphash.Comparable(cowSeed, k) % cowShards)
}

func (m *cowMap[K, V]) get(k K) (V, bool) {
	v, ok := m.shards[shardOf(k)][k]
	return v, ok
}

// at returns the value of k, or the zero value.
func (m *cowMap[K, V]) at(k K) V {
	return m.shards[shardOf(k)][k]
}

// writable returns shard i, copied first if it is shared.
func (m *cowMap[K, V]) writable(i int) map[K]V {
	if m.owned[i/64]&(1<<(i%64)) == 0 {
		s := maps.Clone(m.shards[i])
		if s == nil {
			s = map[K]V{}
		}
		m.shards[i] = s
		m.owned[i/64] |= 1 << (i % 64)
	}
	return m.shards[i]
}

func (m *cowMap[K, V]) set(k K, v V) {
	s := m.writable(shardOf(k))
	if _, ok := s[k]; !ok {
		m.n++
	}
	s[k] = v
}

func (m *cowMap[K, V]) del(k K) {
	i := shardOf(k)
	if _, ok := m.shards[i][k]; !ok {
		return
	}
	delete(m.writable(i), k)
	m.n--
}

func (m *cowMap[K, V]) len() int { return m.n }

// all iterates over the map, in no particular order.
func (m *cowMap[K, V]) all() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		for _, s := range m.shards {
			for k, v := range s {
				if !yield(k, v) {
					return
				}
			}
		}
	}
}

// clone returns a copy of m that shares its shards until either writes.
func (m *cowMap[K, V]) clone() cowMap[K, V] {
	return cowMap[K, V]{shards: m.shards, n: m.n}
}
