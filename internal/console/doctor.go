package console

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/kube"
)

// The Doctor page: a Secret pasted (and optionally a Pod, or an image)
// gets the findings of berth doctor, from the same code: kube.Assemble
// builds the input, kube.Diagnose checks it, and the probe of the registry
// is kube.HTTPProber, as the CLI's. Only images of this registry are
// probed (the console makes no request to other hosts for its visitors).

// maxPaste bounds the pasted manifests.
const maxPaste = 256 << 10

// doctorForm is the Doctor page's data.
type doctorForm struct {
	Secrets, Pod, Image string
	Message             string
	// Ran is set once the checks ran; OK when the pull would succeed.
	Ran, OK  bool
	Checked  string
	Findings []kube.Finding
}

// selfProber probes this registry only, through its own listener.
type selfProber struct {
	host  string
	inner *kube.HTTPProber
}

// Probe asks this registry, or refuses another host.
func (p selfProber) Probe(ctx context.Context, host, repo, ref, user, password, platform string) kube.ProbeResult {
	if !strings.EqualFold(host, p.host) {
		return kube.ProbeResult{Err: "the console checks images of this registry (" + p.host + ") only; for " + host + " run berth doctor"}
	}
	return p.inner.Probe(ctx, host, repo, ref, user, password, platform)
}

// selfClient returns the HTTP client of the Doctor's probes: connected to
// the server's own listener (Options.SelfAddr, else the host asked for),
// so that no name needs to resolve from inside. One client for all
// requests, so that its kept connections are reused, not left behind.
func (h *Handler) selfClient() *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if h.opts.SelfAddr != nil {
				if self := h.opts.SelfAddr(); self != "" {
					addr = self
				}
			}
			return dialer.DialContext(ctx, network, addr)
		},
		// The connection goes to this process's own listener: its
		// certificate is the one berth serves, whatever signed it.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12},
		IdleConnTimeout: time.Minute,
	}
	return &http.Client{Transport: tr, Timeout: 15 * time.Second}
}

// prober returns the request's prober: HTTP to this registry under the
// name the visitor uses (r.Host), over the console's own client.
func (h *Handler) prober(r *http.Request) kube.Prober {
	plain := r.TLS == nil
	return selfProber{host: r.Host, inner: &kube.HTTPProber{Client: h.probeClient, PlainHTTP: func(string) bool { return plain }}}
}

// doctor shows the form, and on POST the findings.
func (h *Handler) doctor(w http.ResponseWriter, r *http.Request, v *viewer) error {
	if !v.SignedIn() && !v.AuthOff() {
		http.Redirect(w, r, "/login?next=/doctor", http.StatusSeeOther)
		return nil
	}
	f := doctorForm{}
	if r.Method != http.MethodPost {
		return h.render(w, r, "doctor", http.StatusOK, page{Title: "Doctor", Viewer: v, Data: f})
	}
	if err := h.checkChange(r, v); err != nil {
		return err
	}
	f.Secrets, f.Pod, f.Image = r.PostForm.Get("secrets"), r.PostForm.Get("pod"), strings.TrimSpace(r.PostForm.Get("image"))
	again := func(msg string) error {
		f.Message = msg
		return h.render(w, r, "doctor", http.StatusBadRequest, page{Title: "Doctor", Viewer: v, Data: f})
	}
	if len(f.Secrets)+len(f.Pod) > maxPaste {
		return again("At most 256 KiB of manifests.")
	}
	req := kube.Request{Image: f.Image}
	for _, pasted := range []struct{ what, text string }{{"Secrets", f.Secrets}, {"Pod", f.Pod}} {
		if err := req.AddManifests([]byte(pasted.text)); err != nil {
			return again("The " + pasted.what + ": " + err.Error())
		}
	}
	in, err := kube.Assemble(req)
	if errors.Is(err, kube.ErrNoImage) {
		return again("Name the image to pull, or paste the Pod that runs it.")
	}
	if err != nil {
		return err
	}
	f.Findings, f.OK = kube.Diagnose(r.Context(), in, h.prober(r))
	f.Ran, f.Checked = true, in.Image
	return h.render(w, r, "doctor", http.StatusOK, page{Title: "Doctor", Viewer: v, Data: f})
}
