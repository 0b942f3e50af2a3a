package blobstore

import (
	"context"
	"sync"
	"time"

	"github.com/berth-registry/berth/internal/reference"
)

// memIndex is an S3Index in memory, for the store's own tests: stores of
// one test that share a bucket prefix (replicas) share one (indexFor).
// The server's index is the metadata database's (package metadata, tested
// there and end to end).
type memIndex struct {
	mu      sync.Mutex
	uploads map[string]*memUpload
	blobs   map[reference.Digest]memLocation
}

type memUpload struct {
	state, pending []byte
	rev            string
	modified       time.Time
}

type memLocation struct {
	key     string
	size    int64
	created time.Time
}

var (
	indexesMu sync.Mutex
	indexes   = map[string]*memIndex{}
)

// indexFor returns the index of the stores on a bucket prefix.
func indexFor(bucket, prefix string) *memIndex {
	indexesMu.Lock()
	defer indexesMu.Unlock()
	k := bucket + "/" + prefix
	if indexes[k] == nil {
		indexes[k] = &memIndex{uploads: map[string]*memUpload{}, blobs: map[reference.Digest]memLocation{}}
	}
	return indexes[k]
}

func (m *memIndex) UploadState(_ context.Context, id string) ([]byte, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := m.uploads[id]
	if u == nil {
		return nil, "", ErrUploadNotFound
	}
	return u.state, u.rev, nil
}

func (m *memIndex) UploadPending(_ context.Context, id, rev string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := m.uploads[id]
	switch {
	case u == nil:
		return nil, ErrUploadNotFound
	case u.rev != rev:
		return nil, ErrStateChanged
	}
	return u.pending, nil
}

func (m *memIndex) PutUploadState(_ context.Context, id string, state []byte, pending *[]byte, rev, ifRev string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := m.uploads[id]
	switch {
	case ifRev == "" && u != nil, ifRev != "" && (u == nil || u.rev != ifRev):
		return ErrStateChanged
	case u == nil:
		u = &memUpload{}
		m.uploads[id] = u
	}
	u.state, u.rev, u.modified = append([]byte(nil), state...), rev, time.Now()
	if pending != nil {
		u.pending = append([]byte(nil), *pending...)
	}
	return nil
}

func (m *memIndex) DeleteUploadState(_ context.Context, id, ifRev string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if u, ok := m.uploads[id]; ok && ifRev != "" && u.rev != ifRev {
		return ErrStateChanged
	}
	delete(m.uploads, id)
	return nil
}

func (m *memIndex) StaleUploadStates(_ context.Context, before time.Time) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []string
	for id, u := range m.uploads {
		if u.modified.Before(before) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

func (m *memIndex) BlobLocation(_ context.Context, d reference.Digest) (string, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.blobs[d]
	if !ok {
		return "", 0, ErrNotFound
	}
	return l.key, l.size, nil
}

func (m *memIndex) AddBlobLocation(_ context.Context, d reference.Digest, key string, size int64) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.blobs[d]; ok {
		return l.key, nil
	}
	m.blobs[d] = memLocation{key, size, time.Now()}
	return key, nil
}

func (m *memIndex) DeleteBlobLocation(_ context.Context, d reference.Digest) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.blobs, d)
	return nil
}

func (m *memIndex) BlobLocations(_ context.Context, fn func(d reference.Digest, key string, size int64, created time.Time) error) error {
	m.mu.Lock()
	locs := make(map[reference.Digest]memLocation, len(m.blobs))
	for d, l := range m.blobs {
		locs[d] = l
	}
	m.mu.Unlock()
	for d, l := range locs {
		if err := fn(d, l.key, l.size, l.created); err != nil {
			return err
		}
	}
	return nil
}
