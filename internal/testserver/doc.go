// Package testserver starts real servers, versitygw and MinIO (S3),
// PostgreSQL, OpenLDAP (slapd) and Ory Hydra (OpenID Connect, with a
// login and consent app in this process), for tests and for the benchmark
// program (bench): each runs a private
// instance on 127.0.0.1 over a temporary directory and answers before the
// function returns.
//
// StartS3 and StartPostgres start a server and return it with an error;
// their caller stops it (the stop function of StartS3, Postgres.Stop).
// Tests use the wrappers instead: S3 stops its server when the test ends,
// PostgresDSN hands each call a fresh database on one server per test
// binary, which Main, called from TestMain, stops.
//
// The server binaries are not vendored: versitygw is looked for on PATH
// and in $BERTH_TOOLS_DIR/bin (default ~/.cache/berth-tools/bin), where
// scripts/test-deps.sh installs it; PostgreSQL is Debian's package, under
// /usr/lib/postgresql. When a server cannot run here (its binary is missing,
// or the file system lacks what it needs) the Start functions return an
// error matching ErrMissing, and the test wrappers skip the test, or fail
// it when the environment variable CI is "true", so that a CI machine
// cannot silently skip the tests that need it.
package testserver
