// Package digestlock serializes work on one blob digest inside a process:
// storing a blob and linking it, against garbage collection deleting it.
package digestlock

import (
	"hash/fnv"
	"slices"
	"sync"
)

// Set is a striped set of mutexes keyed by digest.
type Set struct {
	stripes [256]sync.Mutex
}

func (s *Set) stripe(key string) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(len(s.stripes)))
}

// Lock locks the stripe of key and returns its unlock function.
func (s *Set) Lock(key string) func() {
	m := &s.stripes[s.stripe(key)]
	m.Lock()
	return m.Unlock
}

// LockAll locks the stripes of every key, in stripe order so that two
// callers of LockAll cannot deadlock (and Lock holds only one stripe), and
// returns the function that unlocks them all.
func (s *Set) LockAll(keys []string) func() {
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
	}
}
