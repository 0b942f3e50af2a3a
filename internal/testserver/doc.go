// Package testserver starts real servers for tests: each helper runs a
// private instance on 127.0.0.1 over a temporary directory, waits until it
// answers and stops it when the test ends.
//
// The server binaries are not vendored: helpers look for them on PATH and
// in $BERTH_TOOLS_DIR/bin (default ~/.cache/berth-tools/bin), where
// scripts/test-deps.sh installs them. When a binary is missing the test is
// skipped, or fails when the environment variable CI is "true", so that a
// CI machine cannot silently skip the tests that need it.
//
// The package is meant for tests only.
package testserver
