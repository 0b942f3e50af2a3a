package e2e

import (
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// conformanceTimeout bounds one run of the OCI conformance suite (about
// 850 tests; a minute or two on a healthy local registry).
const conformanceTimeout = 20 * time.Minute

// conformanceDefaults are the suite settings (its configuration is read
// from OCI_* environment variables) that enable every workflow of the
// distribution-spec 1.1: pull, push (including cross-repository mount from
// OCI_REPO2 and anonymous "automatic" mount without `from`), content
// discovery (tag listing, referrers API) and content management (deletes of
// tags, manifests and blobs, checked to be immediate), over every kind of
// test data the suite generates, sha512 digests included.
//
// A variable already set in the environment wins, so a run can be made
// stricter, e.g. OCI_VERSION=dev turns on the 1.1+dev checks
// (OCI_API_BLOBS_UPLOAD_CANCEL, OCI_API_BLOBS_DIGEST_HEADER,
// OCI_API_MANIFESTS_DIGEST_HEADER, OCI_API_MANIFESTS_TAG_PARAM), which are
// left at the version's defaults here. OCI_DATA_SPARSE stays false: sparse
// manifests reference blobs that were never pushed, which a registry may
// reject.
var conformanceDefaults = []string{
	"OCI_VERSION=1.1",
	"OCI_REPO1=conformance/repo1",
	"OCI_REPO2=conformance/repo2",
	"OCI_LOG=warn",
	"OCI_CACHE_AUTH=true",
	// APIs.
	"OCI_API_PING=true",
	"OCI_API_PULL=true",
	"OCI_API_PUSH=true",
	"OCI_API_BLOBS_ATOMIC=true",
	"OCI_API_BLOBS_DELETE=true",
	"OCI_API_BLOBS_MOUNT_ANONYMOUS=true",
	"OCI_API_MANIFESTS_ATOMIC=true",
	"OCI_API_MANIFESTS_DELETE=true",
	"OCI_API_TAGS_ATOMIC=true",
	"OCI_API_TAGS_DELETE=true",
	"OCI_API_TAGS_LIST=true",
	"OCI_API_REFERRER=true",
	// Test data.
	"OCI_DATA_IMAGE=true",
	"OCI_DATA_INDEX=true",
	"OCI_DATA_INDEX_LIST=true",
	"OCI_DATA_SPARSE=false",
	"OCI_DATA_ARTIFACT=true",
	"OCI_DATA_SUBJECT=true",
	"OCI_DATA_SUBJECT_MISSING=true",
	"OCI_DATA_ARTIFACT_LIST=true",
	"OCI_DATA_SUBJECT_LIST=true",
	"OCI_DATA_DATA_FIELD=true",
	"OCI_DATA_NONDISTRIBUTABLE=true",
	"OCI_DATA_CUSTOM_FIELDS=true",
	"OCI_DATA_NO_LAYERS=true",
	"OCI_DATA_EMPTY_BLOB=true",
	"OCI_DATA_SHA512=true",
}

// conformanceOwned are the variables the test always sets itself: where the
// registry is and where the reports go. Legacy variables of older suite
// versions (which would redirect the run) are dropped from the environment.
var conformanceOwned = map[string]bool{
	"OCI_REGISTRY": true, "OCI_TLS": true, "OCI_RESULTS_DIR": true, "OCI_CONFIGURATION": true,
	"OCI_USERNAME": true, "OCI_PASSWORD": true,
	"OCI_ROOT_URL": true, "OCI_NAMESPACE": true, "OCI_CROSSMOUNT_NAMESPACE": true,
	"OCI_TEST_PULL": true, "OCI_TEST_PUSH": true, "OCI_TEST_CONTENT_DISCOVERY": true,
	"OCI_TEST_CONTENT_MANAGEMENT": true, "OCI_TAG_NAME": true, "OCI_MANIFEST_DIGEST": true,
	"OCI_BLOB_DIGEST": true, "OCI_DEBUG": true, "OCI_HIDE_SKIPPED_WORKFLOWS": true,
	"OCI_DELETE_MANIFEST_BEFORE_BLOBS": true,
}

// conformanceEnv returns the suite's environment: the process environment
// without the variables the test owns, the defaults for any OCI_* variable
// not already set, and the registry settings.
func conformanceEnv(addr, resultsDir string, overrides []string) (env, settings []string) {
	set := map[string]bool{}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if conformanceOwned[k] {
			continue
		}
		if strings.HasPrefix(k, "OCI_") {
			set[k] = true
			settings = append(settings, kv)
		}
		env = append(env, kv)
	}
	for _, kv := range append(append([]string{}, overrides...), conformanceDefaults...) {
		k, _, _ := strings.Cut(kv, "=")
		if !set[k] {
			set[k] = true
			env = append(env, kv)
			settings = append(settings, kv)
		}
	}
	own := []string{"OCI_REGISTRY=" + addr, "OCI_TLS=disabled", "OCI_RESULTS_DIR=" + resultsDir}
	env = append(env, own...)
	settings = append(settings, own...)
	sort.Strings(settings)
	return env, settings
}

// junitSuites mirrors the suite's junit.xml.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Disabled int          `xml:"disabled,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name      string      `xml:"name,attr"`
	Tests     int         `xml:"tests,attr"`
	Failures  int         `xml:"failures,attr"`
	Errors    int         `xml:"errors,attr"`
	Skipped   int         `xml:"skipped,attr"`
	Disabled  int         `xml:"disabled,attr"`
	Testcases []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name   string `xml:"name,attr"`
	Status string `xml:"status,attr"`
	// The suite writes a test's errors to system-out and its request and
	// response log (or skip reason) to system-err.
	SystemOut string     `xml:"system-out"`
	SystemErr string     `xml:"system-err"`
	Failure   *junitText `xml:"failure"`
	Error     *junitText `xml:"error"`
}

type junitText struct {
	Message string `xml:"message,attr"`
	Data    string `xml:",chardata"`
}

// conformanceCounts are the suite's totals.
type conformanceCounts struct {
	Passed, Failed, Skipped int
}

// counts derives pass/fail/skip totals from the suites' attributes (which
// the suite computes over every test, including errors in non-leaf steps).
func (j *junitSuites) counts() conformanceCounts {
	var c conformanceCounts
	for _, s := range j.Suites {
		failed := s.Failures + s.Errors
		skipped := s.Skipped + s.Disabled
		c.Failed += failed
		c.Skipped += skipped
		c.Passed += s.Tests - failed - skipped
	}
	return c
}

// message returns a test case's error text.
func (c *junitCase) message() string {
	var parts []string
	for _, r := range []*junitText{c.Failure, c.Error} {
		if r != nil {
			parts = append(parts, strings.TrimSpace(r.Message+" "+r.Data))
		}
	}
	if s := strings.TrimSpace(c.SystemOut); s != "" {
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// skipReason extracts the reason the suite logged for skipping a test.
func (c *junitCase) skipReason() string {
	_, after, ok := strings.Cut(c.SystemErr, "skipping test:")
	if !ok {
		return strings.TrimSpace(c.message())
	}
	return strings.Join(strings.Fields(after), " ")
}

// TestConformance runs the OCI distribution-spec conformance suite against
// a fresh berth with every workflow enabled and fails on any failed test:
// once as the 1.1 specification defines it, and once with the suite's
// development checks (upload cancel, digest headers, tag parameters on
// pushes by digest), which berth implements as well.
//
// The "v1.1-auth" run does the 1.1 run against berth with token auth on (its
// default), as the admin user: the suite follows the Bearer challenges to
// /token with OCI_USERNAME and OCI_PASSWORD.
func TestConformance(t *testing.T) {
	t.Run("v1.1", func(t *testing.T) { runConformance(t, nil) })
	t.Run("dev", func(t *testing.T) { runConformance(t, []string{"OCI_VERSION=dev"}) })
	t.Run("v1.1-auth", func(t *testing.T) { runConformance(t, nil, withAuth) })
}

// withAuth is the option of runConformance that starts berth with token
// auth and has the suite log in as admin.
const withAuth = true

func runConformance(t *testing.T, overrides []string, auth ...bool) {
	skipIfShort(t)
	needTool(t, "conformance")
	var s *server
	if len(auth) > 0 && auth[0] {
		b := startAuthBerth(t)
		s = b.server
		overrides = append([]string{"OCI_USERNAME=admin", "OCI_PASSWORD=" + b.AdminPassword}, overrides...)
	} else {
		s = startBerth(t)
	}
	runConformanceAgainst(t, s, overrides)
}

// runConformanceAgainst runs the suite against a running berth and fails
// the test on any failed conformance test.
func runConformanceAgainst(t *testing.T, s *server, overrides []string) {
	bin := needTool(t, "conformance")

	resultsDir := os.Getenv("BERTH_CONFORMANCE_RESULTS_DIR")
	if resultsDir == "" {
		resultsDir = filepath.Join(t.TempDir(), "results")
	} else if abs, err := filepath.Abs(resultsDir); err == nil {
		resultsDir = filepath.Join(abs, filepath.Base(t.Name()))
	}
	if err := os.MkdirAll(resultsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Stale reports must not pass for this run's.
	for _, f := range []string{"junit.xml", "results.yaml", "report.html"} {
		_ = os.Remove(filepath.Join(resultsDir, f))
	}
	env, settings := conformanceEnv(s.Addr, resultsDir, overrides)
	for i, kv := range settings {
		if strings.HasPrefix(kv, "OCI_PASSWORD=") {
			settings[i] = "OCI_PASSWORD=(the admin password)"
		}
	}
	t.Logf("conformance settings:\n  %s", strings.Join(settings, "\n  "))

	// The suite reads ./oci-conformance.yaml when present: run it in an
	// empty directory so only the environment configures it.
	workDir := t.TempDir()
	logPath := filepath.Join(resultsDir, "conformance.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), conformanceTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Dir = workDir
	cmd.Env = env
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	start := time.Now()
	runErr := cmd.Run()
	logFile.Close()
	elapsed := time.Since(start).Round(time.Millisecond)
	// The suite exits 1 when a test failed, and 0 when its configuration
	// could not even be loaded: judge the run by its report, not its exit.
	t.Logf("conformance suite ran for %s (exit: %v); reports in %s", elapsed, exitStatus(runErr), resultsDir)
	if ctx.Err() != nil {
		t.Fatalf("conformance suite timed out after %s; log tail:\n%s", conformanceTimeout, tailFile(logPath, 40))
	}

	junitPath := filepath.Join(resultsDir, "junit.xml")
	data, err := os.ReadFile(junitPath)
	if err != nil {
		t.Fatalf("the conformance suite wrote no report (%v); its output:\n%s", err, tailFile(logPath, 60))
	}
	if _, err := os.Stat(filepath.Join(resultsDir, "results.yaml")); err != nil {
		t.Errorf("the conformance suite wrote no results.yaml: %v", err)
	}
	var report junitSuites
	if err := xml.Unmarshal(data, &report); err != nil {
		t.Fatalf("parsing %s: %v", junitPath, err)
	}
	c := report.counts()
	summary := fmt.Sprintf("conformance: %d passed, %d failed, %d skipped", c.Passed, c.Failed, c.Skipped)
	t.Log(summary)
	fmt.Println(summary)

	// Per-API and per-data-type status, as the suite summarises it.
	if sec := reportSections(logPath); sec != "" {
		t.Logf("conformance summary:\n%s", sec)
	}

	var failed, skipped []string
	for _, s := range report.Suites {
		for i := range s.Testcases {
			tc := &s.Testcases[i]
			switch tc.Status {
			case "passed":
			case "skipped":
				skipped = append(skipped, fmt.Sprintf("%s: %s", tc.Name, truncate(tc.skipReason(), 300)))
			default: // failure, error
				failed = append(failed, fmt.Sprintf("%s [%s]: %s", tc.Name, tc.Status, truncate(oneLine(tc.message()), 600)))
			}
		}
	}
	if len(skipped) > 0 {
		t.Logf("%d skipped conformance tests:\n  %s", len(skipped), strings.Join(skipped, "\n  "))
	}
	if c.Failed > 0 {
		if len(failed) < c.Failed {
			// A test case can count several results, and errors of
			// intermediate steps are counted without a test case.
			failed = append(failed, fmt.Sprintf("(the suite counts %d more failures than failing test cases; see the lines marked FAIL or Error in %s)",
				c.Failed-len(failed), logPath))
		}
		t.Errorf("%d conformance tests failed:\n  %s", c.Failed, strings.Join(failed, "\n  "))
	}
	if c.Passed == 0 {
		t.Errorf("no conformance test passed; output:\n%s", tailFile(logPath, 60))
	}
}

// oneLine joins the lines of a multi-line message with " | ".
func oneLine(s string) string {
	return strings.Join(lines(s), " | ")
}

// reportSections returns the "OCI Conformance Result", "API conformance"
// and "Data conformance" blocks of the suite's text output.
func reportSections(logPath string) string {
	data, err := os.ReadFile(logPath)
	if err != nil {
		return ""
	}
	var out []string
	in := false
	for _, l := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(l, "OCI Conformance Result:"), l == "API conformance:", l == "Data conformance:":
			in = true
		case in && strings.TrimSpace(l) == "":
			in = false
			continue
		case in && !strings.HasPrefix(l, " "):
			in = false
		}
		if in {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
