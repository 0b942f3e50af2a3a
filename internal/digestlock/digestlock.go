// Package digestlock serializes work on one blob digest: storing a blob and
// linking it, against garbage collection deleting it. Set does it inside
// one process; Postgres across the replicas that share a database.
package digestlock

import (
	"context"
	"hash/fnv"
	"slices"
	"sync"
)

// Locker locks digests (or other keys).
type Locker interface {
	// Lock locks key and returns the function that unlocks it.
	Lock(ctx context.Context, key string) (unlock func(), err error)
	// LockAll locks every key, in an order that cannot deadlock with other
	// callers of LockAll (Lock holds one key at a time).
	LockAll(ctx context.Context, keys []string) (unlock func(), err error)
}

// Set is a striped set of mutexes keyed by digest, for one process.
type Set struct {
	stripes [256]sync.Mutex
}

func (s *Set) stripe(key string) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(len(s.stripes)))
}

// Lock locks the stripe of key.
func (s *Set) Lock(_ context.Context, key string) (func(), error) {
	m := &s.stripes[s.stripe(key)]
	m.Lock()
	return m.Unlock, nil
}

// LockAll locks the stripes of every key, in stripe order.
func (s *Set) LockAll(_ context.Context, keys []string) (func(), error) {
	idx := make([]int, 0, len(keys))
	for _, k := range keys {
		idx = append(idx, s.stripe(k))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		s.stripes[i].Lock()
	}
	return func() {
		for _, i := range slices.Backward(idx) {
			s.stripes[i].Unlock()
		}
	}, nil
}
