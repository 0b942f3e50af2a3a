// Package e2e holds berth's end-to-end tests: the OCI distribution-spec
// conformance suite and real clients (Docker Engine, skopeo, crane, oras)
// run against a freshly built berth binary listening on loopback.
//
// The tests need tools that `bash scripts/test-deps.sh` installs (and, for
// the Docker test, a daemon that `bash scripts/dockerd.sh` starts). Tools are
// looked up on PATH and in $BERTH_TOOLS_DIR/bin (default
// ~/.cache/berth-tools/bin). A missing tool skips its test, or fails it when
// CI=true. All tests skip under `go test -short`.
//
// Environment knobs:
//
//	BERTH_BIN                      use this berth binary instead of building ./cmd/berth
//	BERTH_TOOLS_DIR                where test-deps.sh caches tools (bin/ is searched)
//	BERTH_CONFORMANCE_RESULTS_DIR  keep the conformance reports in this directory
//	OCI_*                          extra conformance-suite settings (see conformance_test.go)
package e2e
