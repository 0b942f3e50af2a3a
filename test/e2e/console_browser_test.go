package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"sigs.k8s.io/yaml"
)

// xssLabel is an image label that would run script if a page inserted it
// as HTML.
const xssLabel = `<img src=x onerror="document.title='pwned'"><script>alert('label')</script>`

// newBrowser starts Debian's Chromium headless (apt-get install chromium)
// through chromedp and returns a browser context; any JavaScript dialog
// (alert, confirm) fails the test, and is dismissed.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	bin := needTool(t, "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 900), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	dialogs := make(chan string, 16)
	if err := chromedp.Listen(ctx, func(ev any) {
		if d, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			select {
			case dialogs <- d.Message:
			default:
			}
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	go func() {
		for m := range dialogs {
			t.Errorf("a JavaScript dialog opened: %q", m)
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	t.Cleanup(func() { close(dialogs) })
	return ctx
}

// run runs one chromedp action with a time limit and fails the test on
// error.
func run1[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	v, err := chromedp.Run(tctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// do runs chromedp steps with a time limit and fails the test on error.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(tctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// screenshot saves a full-page screenshot into $BERTH_SCREENSHOTS (for
// docs/console.md) when that is set.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("BERTH_SCREENSHOTS")
	if dir == "" {
		return
	}
	writeFile(t, filepath.Join(dir, name+".png"), run1(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100)))
}

// TestConsoleInBrowser signs in to the console in a real browser, finds an
// image pushed by the Docker Engine and checks its page against what
// docker reports (digest, layers and their sizes, platform, command), finds
// a referrer pushed with oras, and checks that a hostile image label is
// shown as text and runs nothing.
func TestConsoleInBrowser(t *testing.T) {
	skipIfShort(t)
	docker := needDocker(t)
	needStaticBusybox(t)
	oras := needTool(t, "oras")
	crane := needTool(t, "crane")
	ctx := newBrowser(t)

	b := startAuthBerth(t)
	alicePass := b.addUser(t, "alice", false)
	b.addNamespace(t, "team", false)
	b.setMember(t, "team", "alice", "owner") // owners make robots and delete

	// docker login, build and push an image with a hostile label.
	d := newDockerClient(t, docker, b.Addr)
	d.mustLogin("alice", alicePass)
	ref := d.ref("team/web:v1")
	ctxDir := busyboxContext(t)
	writeFile(t, filepath.Join(ctxDir, "index.html"), []byte("hello "+randomHex(t, 8)))
	writeFile(t, filepath.Join(ctxDir, "Dockerfile"), []byte(strings.Join([]string{
		"FROM scratch",
		"COPY busybox /bin/busybox",
		"COPY index.html /www/index.html",
		`LABEL org.example.note="` + strings.ReplaceAll(xssLabel, `"`, `\"`) + `"`,
		`ENTRYPOINT ["/bin/busybox"]`,
		`CMD ["httpd", "-f", "-h", "/www"]`,
		"",
	}, "\n")))
	d.created = append(d.created, ref)
	d.run("build", "-q", "-t", ref, ctxDir)
	pushed := d.push(ref)
	ref2 := d.ref("team/web:v2")
	d.created = append(d.created, ref2)
	d.run("tag", ref, ref2)
	d.push(ref2)

	// What docker says of it: the config, and the manifest's layers.
	var inspect []struct {
		Os, Architecture string
		Config           struct {
			Cmd, Entrypoint []string
			Labels          map[string]string
		}
	}
	mustUnmarshal(t, "docker image inspect", []byte(d.run("image", "inspect", ref)), &inspect)
	if len(inspect) != 1 || inspect[0].Config.Labels["org.example.note"] != xssLabel {
		t.Fatalf("docker image inspect: %+v", inspect)
	}
	var man struct {
		Config struct {
			Size int64 `json:"size"`
		} `json:"config"`
		Layers []struct {
			Digest string `json:"digest"`
			Size   int64  `json:"size"`
		} `json:"layers"`
	}
	manBody, manDigest := fetchManifestAs(t, b, "alice", alicePass, "team/web", "v1")
	if manDigest != pushed {
		t.Fatalf("registry serves %s, docker pushed %s", manDigest, pushed)
	}
	mustUnmarshal(t, "manifest", manBody, &man)
	total := int64(len(manBody)) + man.Config.Size
	for _, l := range man.Layers {
		total += l.Size
	}

	// oras attaches an SBOM-like referrer.
	work := t.TempDir()
	writeFile(t, filepath.Join(work, "sbom.json"), []byte(`{"packages":["busybox"]}`))
	var attached struct {
		Digest string `json:"digest"`
	}
	mustUnmarshal(t, "oras attach", []byte(runIn(t, work, oras, "attach", "--plain-http", "-u", "alice", "-p", alicePass,
		"--format", "json", "--artifact-type", "application/vnd.berth.e2e.sbom", b.Addr+"/team/web@"+pushed,
		"sbom.json:application/json")), &attached)

	// Sign in.
	do(t, ctx, "sign in",
		chromedp.Navigate(b.URL+"/login"),
		chromedp.WaitVisible(chromedp.ID("user")),
		chromedp.SendKeys(chromedp.ID("user"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), alicePass),
		chromedp.Submit(chromedp.ID("password")),
		chromedp.WaitVisible(chromedp.ID("repositories")),
	)
	if title := run1(t, ctx, "title", chromedp.Title()); title != "Repositories · berth" {
		t.Errorf("title after sign-in %q", title)
	}
	screenshot(t, ctx, "console-repositories")

	// Search, open the repository, then the tag.
	do(t, ctx, "find the repository",
		chromedp.SendKeys(chromedp.ID("q"), "web"),
		chromedp.Submit(chromedp.ID("q")),
		chromedp.WaitVisible(chromedp.ID("search-results")), // on the results page, not the one before
		chromedp.WaitVisible(chromedp.CSS(`#repositories a[href="/repo?name=team%2fweb"]`)),
		chromedp.Click(chromedp.CSS(`#repositories a[href="/repo?name=team%2fweb"]`)),
		chromedp.WaitVisible(chromedp.ID("tags")),
	)
	tags := run1(t, ctx, "tags", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#tags tbody tr td:first-child a")).map(a => a.textContent)`))
	if strings.Join(tags, ",") != "v2,v1" {
		t.Errorf("tags %v, want v2,v1 (newest first)", tags)
	}
	sizes := run1(t, ctx, "tag sizes", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#tags tbody td[data-bytes]")).map(td => td.dataset.bytes)`))
	if strings.Join(sizes, ",") != jsonNumber(total)+","+jsonNumber(total) {
		t.Errorf("tag sizes %v, want %d for both (manifest, config and layers)", sizes, total)
	}
	screenshot(t, ctx, "console-repository")

	do(t, ctx, "open the image", chromedp.Click(chromedp.CSS(`#tags a[href="/image?name=team%2fweb&ref=v1"]`)), chromedp.WaitVisible(chromedp.ID("digest")))
	digest := run1(t, ctx, "digest", chromedp.Text(chromedp.ID("digest")))
	platform := run1(t, ctx, "platform", chromedp.Text(chromedp.ID("platform")))
	cmd := run1(t, ctx, "cmd", chromedp.Text(chromedp.ID("cmd")))
	entrypoint := run1(t, ctx, "entrypoint", chromedp.Text(chromedp.ID("entrypoint")))
	totalBytes := run1(t, ctx, "total size", chromedp.AttributeValue(chromedp.ID("total-size"), "data-bytes")).Value
	layers := run1(t, ctx, "layers", chromedp.Evaluate[[]map[string]string](
		`Array.from(document.querySelectorAll("#layers tbody tr")).map(r => ({digest: r.cells[1].textContent, size: r.cells[3].dataset.bytes}))`))
	labelText := run1(t, ctx, "label", chromedp.Evaluate[string](`document.querySelector("#labels td").textContent`))
	injected := run1(t, ctx, "injected nodes", chromedp.Evaluate[int](
		`document.querySelectorAll("main img, main script").length + (document.title === "pwned" ? 100 : 0)`))
	referrers := run1(t, ctx, "referrers", chromedp.Text(chromedp.CSS(".referrers")))
	title := run1(t, ctx, "title", chromedp.Title())
	screenshot(t, ctx, "console-image")
	if digest != pushed {
		t.Errorf("image page digest %q, docker pushed %s", digest, pushed)
	}
	if want := inspect[0].Os + "/" + inspect[0].Architecture; platform != want {
		t.Errorf("platform %q, docker says %q", platform, want)
	}
	if want := strings.Join(inspect[0].Config.Cmd, " "); cmd != want {
		t.Errorf("cmd %q, docker says %q", cmd, want)
	}
	if want := strings.Join(inspect[0].Config.Entrypoint, " "); entrypoint != want {
		t.Errorf("entrypoint %q, docker says %q", entrypoint, want)
	}
	if totalBytes != jsonNumber(total) {
		t.Errorf("total size %s bytes, the manifest, config and layers make %d", totalBytes, total)
	}
	if len(layers) != len(man.Layers) {
		t.Fatalf("%d layers shown, the manifest has %d", len(layers), len(man.Layers))
	}
	for i, l := range man.Layers {
		if layers[i]["digest"] != l.Digest || layers[i]["size"] != jsonNumber(l.Size) {
			t.Errorf("layer %d shown as %v, the manifest says %s %d", i, layers[i], l.Digest, l.Size)
		}
	}
	if labelText != xssLabel || injected != 0 {
		t.Errorf("hostile label: shown as %q, %d injected nodes or a changed title (want the text itself and none)", labelText, injected)
	}
	if !strings.Contains(referrers, attached.Digest) {
		t.Errorf("referrer %s not on the image page: %q", attached.Digest, referrers)
	}
	if title != "team/web:v1 · berth" {
		t.Errorf("image page title %q", title)
	}

	// On a phone's screen the pages fit its width (no sideways scrolling
	// of the page itself; wide tables scroll in their own box).
	do(t, ctx, "phone screen", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)))
	for _, p := range []string{"/repo?name=team/web", "/image?name=team/web&ref=v1", "/"} {
		do(t, ctx, "open "+p+" on a phone", chromedp.Navigate(b.URL+p), chromedp.WaitVisible(chromedp.ID("main")))
		if over := run1(t, ctx, "width of "+p, chromedp.Evaluate[int](`document.documentElement.scrollWidth - window.innerWidth`)); over > 0 {
			t.Errorf("%s is %d px wider than a phone's screen", p, over)
		}
		if p == "/repo?name=team/web" {
			screenshot(t, ctx, "console-phone")
		}
	}
	do(t, ctx, "desktop screen", chromedp.EmulateViewport(1280, 900))

	// Pull from Kubernetes: the Secret made in the browser pulls the image
	// with crane, through a docker config holding only its credentials.
	do(t, ctx, "make a pull secret",
		chromedp.Navigate(b.URL+"/repo?name=team/web"),
		chromedp.WaitVisible(chromedp.ID("pull-from-kubernetes")),
		chromedp.Click(chromedp.ID("pull-from-kubernetes")),
		chromedp.WaitVisible(chromedp.ID("make-secret")),
		chromedp.Click(chromedp.ID("make-secret")),
		chromedp.WaitVisible(chromedp.ID("secret-yaml")),
	)
	screenshot(t, ctx, "console-pull-secret")
	yml := run1(t, ctx, "secret YAML", chromedp.TextContent(chromedp.ID("secret-yaml")))
	var secret struct {
		Kind string            `json:"kind"`
		Type string            `json:"type"`
		Data map[string][]byte `json:"data"`
	}
	if err := yaml.Unmarshal([]byte(yml), &secret); err != nil {
		t.Fatalf("the page's Secret YAML: %v\n%s", err, yml)
	}
	if secret.Kind != "Secret" || secret.Type != "kubernetes.io/dockerconfigjson" || len(secret.Data[".dockerconfigjson"]) == 0 {
		t.Fatalf("the page's Secret: %+v", secret)
	}
	cfgDir := t.TempDir()
	writeFile(t, filepath.Join(cfgDir, "config.json"), secret.Data[".dockerconfigjson"])
	got := strings.TrimSpace(mustSucceed(t, "crane digest with the Secret's credentials",
		execIn(t, "", []string{"DOCKER_CONFIG=" + cfgDir}, crane, "digest", "--insecure", ref)))
	if got != pushed {
		t.Errorf("crane digest with the Secret's credentials: %s, want %s", got, pushed)
	}

	// Delete tag v2 in the browser; the API no longer has it, v1 stays.
	do(t, ctx, "delete v2",
		chromedp.Navigate(b.URL+"/repo?name=team/web"),
		chromedp.WaitVisible(chromedp.CSS(`a[aria-label="Delete tag v2"]`)),
		chromedp.Click(chromedp.CSS(`a[aria-label="Delete tag v2"]`)),
		chromedp.WaitVisible(chromedp.ID("confirm-delete")),
		chromedp.Click(chromedp.ID("confirm-delete")),
		chromedp.WaitVisible(chromedp.CSS(".notice")),
	)
	if st := b.manifestStatus(t, "team/web", "v2"); st != 404 {
		t.Errorf("team/web:v2 after the delete in the console: %d, want 404", st)
	}
	if st := b.manifestStatus(t, "team/web", "v1"); st != 200 {
		t.Errorf("team/web:v1 after deleting v2: %d, want 200", st)
	}
}

// jsonNumber renders n as a page's data-bytes attribute holds it.
func jsonNumber(n int64) string { b, _ := json.Marshal(n); return string(b) }
