package e2e

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// Images of the services the chart's s3-postgres mode needs (MinIO and
// PostgreSQL), for Pods of the test cluster: no image can be pulled from
// the internet here, so they are built FROM scratch out of this machine's
// binaries (MinIO from the Go module proxy, PostgreSQL from Debian's
// packages with the shared libraries ldd lists) and pushed into the
// bootstrap registry next to berth's own image.

// postgresUID is the PostgreSQL image's user (it refuses to run as root).
const postgresUID = "999"

// postgresStart is the PostgreSQL image's entry point: initdb on the first
// start (user berth, password $POSTGRES_PASSWORD, scram-sha-256 from any
// address of the pod network), then the server.
const postgresStart = `set -eu
bin=%[1]s
data=/var/lib/postgresql/data
if [ ! -s "$data/PG_VERSION" ]; then
	umask 077
	printf '%s\n' "$POSTGRES_PASSWORD" >/var/lib/postgresql/pw
	"$bin/initdb" -D "$data" -U berth --pwfile=/var/lib/postgresql/pw -A scram-sha-256 --no-locale -E UTF8 --no-sync
	rm -f /var/lib/postgresql/pw
	echo "host all all 0.0.0.0/0 scram-sha-256" >>"$data/pg_hba.conf"
fi
exec "$bin/postgres" -D "$data" -c listen_addresses='*' -c unix_socket_directories= -c max_connections=200
`

// buildServiceImages builds the MinIO and PostgreSQL images, pushes them
// with d (logged in to the bootstrap registry, namespace berth) and
// returns their references.
func buildServiceImages(t *testing.T, d *dockerClient) (minio, postgres string) {
	t.Helper()
	minio = d.ref("berth/minio:e2e")
	postgres = d.ref("berth/postgres:e2e")

	mctx := t.TempDir()
	bin := findTool("minio")
	if bin == "" {
		missing(t, "minio not found (scripts/test-deps.sh installs it)")
	}
	copyResolved(t, bin, filepath.Join(mctx, "rootfs", "usr", "bin", "minio"))
	writeFile(t, filepath.Join(mctx, "Dockerfile"), []byte("FROM scratch\nCOPY rootfs/ /\nENTRYPOINT [\"/usr/bin/minio\"]\n"))

	pctx := t.TempDir()
	root := filepath.Join(pctx, "rootfs")
	pgBin := newestPostgresBin(t)
	pgLib := filepath.Join(filepath.Dir(pgBin), "lib")
	pgShare := filepath.Join("/usr/share/postgresql", filepath.Base(filepath.Dir(pgBin)))
	var elves []string
	for _, name := range []string{"postgres", "initdb"} {
		elves = append(elves, copyInto(t, root, filepath.Join(pgBin, name)))
	}
	libs, _ := filepath.Glob(filepath.Join(pgLib, "*.so"))
	for _, lib := range libs {
		if !strings.HasPrefix(filepath.Base(lib), "llvmjit") {
			elves = append(elves, copyInto(t, root, lib))
		}
	}
	copyTreeResolved(t, pgShare, filepath.Join(root, pgShare))
	copyInto(t, root, "/usr/share/zoneinfo/Etc/UTC")
	copyResolved(t, "/usr/share/zoneinfo/UTC", filepath.Join(root, "usr/share/zoneinfo/UTC"))
	for _, lib := range sharedLibraries(t, elves...) {
		copyInto(t, root, lib)
	}
	needStaticBusybox(t)
	copyResolved(t, staticBusybox, filepath.Join(root, "bin", "sh"))
	copyResolved(t, staticBusybox, filepath.Join(root, "bin", "busybox"))
	writeFile(t, filepath.Join(root, "etc", "passwd"), []byte("root:x:0:0::/:/bin/sh\npostgres:x:"+postgresUID+":"+postgresUID+"::/var/lib/postgresql:/bin/sh\n"))
	writeFile(t, filepath.Join(root, "etc", "group"), []byte("root:x:0:\npostgres:x:"+postgresUID+":\n"))
	writeFile(t, filepath.Join(root, "start.sh"), []byte(strings.ReplaceAll(postgresStart, "%[1]s", pgBin)))
	writeFile(t, filepath.Join(pctx, "Dockerfile"), []byte("FROM scratch\nCOPY rootfs/ /\nENV TZ=UTC\nUSER "+
		postgresUID+":"+postgresUID+"\nENTRYPOINT [\"/bin/sh\", \"/start.sh\"]\n"))

	for ref, dir := range map[string]string{minio: mctx, postgres: pctx} {
		d.created = append(d.created, ref)
		d.run("build", "-q", "-t", ref, dir)
		d.push(ref)
	}
	return minio, postgres
}

// newestPostgresBin returns the bin directory of the newest PostgreSQL
// installed from Debian's packages.
func newestPostgresBin(t *testing.T) string {
	t.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Strings(dirs)
	if len(dirs) == 0 {
		missing(t, "PostgreSQL is not installed (apt-get install -y postgresql, or bash scripts/test-deps.sh)")
	}
	return dirs[len(dirs)-1]
}

// lddPath matches the library paths in ldd's output.
var lddPath = regexp.MustCompile(`(?m)(?:=>\s+)?(/\S+)\s+\(0x`)

// sharedLibraries returns the shared libraries (and the dynamic loader)
// the ELF files load, by ldd.
func sharedLibraries(t *testing.T, files ...string) []string {
	t.Helper()
	seen := map[string]bool{}
	for _, f := range files {
		out, err := exec.Command("ldd", f).CombinedOutput()
		if err != nil {
			t.Fatalf("ldd %s: %v\n%s", f, err, out)
		}
		for _, m := range lddPath.FindAllStringSubmatch(string(out), -1) {
			seen[m[1]] = true
		}
	}
	var libs []string
	for l := range seen {
		libs = append(libs, l)
	}
	sort.Strings(libs)
	return libs
}

// copyInto copies the file at the absolute path src to the same path under
// root, following symbolic links, and returns src.
func copyInto(t *testing.T, root, src string) string {
	t.Helper()
	copyResolved(t, src, filepath.Join(root, src))
	return src
}

// copyResolved copies the file src (following symbolic links) to dst,
// keeping its permission bits.
func copyResolved(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, fi.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}

// copyTreeResolved copies the regular files under src (and those symbolic
// links point at) to dst.
func copyTreeResolved(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		copyResolved(t, p, filepath.Join(dst, rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
