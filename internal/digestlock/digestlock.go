// Package digestlock serializes work on one blob digest inside a process:
// storing a blob and linking it, against garbage collection deleting it.
package digestlock

import (
	"hash/fnv"
	"sync"
)

// Set is a striped set of mutexes keyed by digest.
type Set struct {
	stripes [256]sync.Mutex
}

// Lock locks the stripe of key and returns its unlock function.
func (s *Set) Lock(key string) func() {
	h := fnv.New32a()
	h.Write([]byte(key))
	m := &s.stripes[h.Sum32()%uint32(len(s.stripes))]
	m.Lock()
	return m.Unlock
}
