package mirror_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/blobstore"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/mirror"
	"github.com/berth-registry/berth/internal/registry"
)

// newService returns the mirrors of a fresh registry on SQLite and files,
// with the registry service to push to it.
func newService(t *testing.T) (*mirror.Service, *registry.Service) {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	meta, err := metadata.OpenSQLite(ctx, filepath.Join(dir, "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	blobs, err := blobstore.NewFS(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	reg := registry.New(meta, blobs, registry.Options{}, log)
	return mirror.New(meta, reg, t.TempDir(), log), reg
}

func TestSpecChecks(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	for _, c := range []struct {
		sp   mirror.Spec
		want string
	}{
		{mirror.Spec{Name: "Hub", Upstream: "https://r.example"}, "mirror name"},
		{mirror.Spec{Name: "hub", Upstream: "ftp://r.example"}, "upstream"},
		{mirror.Spec{Name: "hub", Upstream: "https://u:p@r.example"}, "upstream"},
		{mirror.Spec{Name: "hub", Upstream: "https://r.example/v2/"}, "upstream"},
		{mirror.Spec{Name: "hub", Upstream: "https://r.example", Username: "u"}, "both a username and a password"},
		{mirror.Spec{Name: "hub", Upstream: "https://r.example", TagTTL: -1}, "tag TTL"},
		{mirror.Spec{Name: "hub", Upstream: "https://r.example", Hosts: []string{"a/b"}}, "host"},
		{mirror.Spec{Name: "hub", Namespace: "a/b", Upstream: "https://r.example"}, "namespace"},
	} {
		_, err := s.Add(ctx, nil, c.sp)
		if !errors.Is(err, auth.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an invalid-request error about %s", c.sp, err, c.want)
		}
	}
	if _, err := s.Add(ctx, &auth.Principal{Name: "bob"}, mirror.Spec{Name: "hub", Upstream: "https://r.example"}); !errors.Is(err, auth.ErrForbidden) {
		t.Errorf("a non-admin added a mirror: %v", err)
	}
	ms, err := s.List(ctx, nil)
	if err != nil || len(ms) != 0 {
		t.Fatalf("refused specs left mirrors: %v %v", ms, err)
	}
}

func TestResolve(t *testing.T) {
	s, reg := newService(t)
	ctx := context.Background()
	add := func(sp mirror.Spec) {
		t.Helper()
		if _, err := s.Add(ctx, &auth.Principal{Name: "root", Admin: true}, sp); err != nil {
			t.Fatal(err)
		}
	}
	add(mirror.Spec{Name: "hub", Upstream: "https://registry-1.docker.io", DockerHub: true})
	add(mirror.Spec{Name: "quay", Upstream: "https://quay.io/", Hosts: []string{"Quay.Example:5000"}})
	if _, err := s.Add(ctx, nil, mirror.Spec{Name: "hub2", Upstream: "https://x.example", DockerHub: true}); !errors.Is(err, auth.ErrExists) {
		t.Errorf("a second Docker Hub mirror: %v", err)
	}
	if _, err := s.Add(ctx, nil, mirror.Spec{Name: "q2", Upstream: "https://quay.io"}); !errors.Is(err, auth.ErrExists) {
		t.Errorf("a second mirror of quay.io: %v", err)
	}
	// A local repository wins over the Docker Hub alias.
	img := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`
	if err := reg.PutBlob(ctx, "team/app", "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", registry.Chunk{Body: strings.NewReader("{}"), Start: -1, Length: 2}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.PutManifest(ctx, "team/app", "v1", "application/vnd.oci.image.manifest.v1+json", strings.NewReader(img), nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, ns          string
		ok                bool
		local, up, mirror string
	}{
		{"hub/library/busybox", "", true, "hub/library/busybox", "library/busybox", "hub"},
		{"hub/busybox", "", true, "hub/busybox", "library/busybox", "hub"},
		{"library/busybox", "", true, "hub/library/busybox", "library/busybox", "hub"},
		{"busybox", "", true, "hub/busybox", "library/busybox", "hub"},
		{"library/busybox", "docker.io", true, "hub/library/busybox", "library/busybox", "hub"},
		{"coreos/etcd", "quay.io", true, "quay/coreos/etcd", "coreos/etcd", "quay"},
		{"coreos/etcd", "quay.example:5000", true, "quay/coreos/etcd", "coreos/etcd", "quay"},
		{"quay/coreos/etcd", "", true, "quay/coreos/etcd", "coreos/etcd", "quay"},
		{"team/app", "", false, "", "", ""},
		{"coreos/etcd", "ghcr.io", false, "", "", ""},
		{"hub", "", true, "hub/hub", "library/hub", "hub"},
	} {
		got, ok, err := s.Resolve(ctx, c.name, c.ns)
		if err != nil || ok != c.ok || got.Local != c.local || got.Upstream != c.up || got.Mirror != c.mirror {
			t.Errorf("Resolve(%q, ns=%q) = %+v %v %v, want ok=%v local=%q upstream=%q mirror=%q", c.name, c.ns, got, ok, err, c.ok, c.local, c.up, c.mirror)
		}
	}
	if local, ok := s.Alias(ctx, "library/busybox"); !ok || local != "hub/library/busybox" {
		t.Errorf("Alias(library/busybox) = %q %v", local, ok)
	}
	for _, name := range []string{"hub/library/busybox", "team/app"} {
		if local, ok := s.Alias(ctx, name); ok {
			t.Errorf("Alias(%s) = %q: not an alias", name, local)
		}
	}
	if up, ok := s.Mirrored("quay/x"); !ok || up != "https://quay.io" {
		t.Errorf("Mirrored(quay/x) = %q %v", up, ok)
	}
	if err := s.Remove(ctx, nil, "quay"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Resolve(ctx, "coreos/etcd", "quay.io"); ok {
		t.Error("a removed mirror still resolves")
	}
}
