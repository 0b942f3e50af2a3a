package kube

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// HTTPProber probes a registry over the Distribution API with token auth,
// the way containerd does for the kubelet.
type HTTPProber struct {
	Client *http.Client
	// PlainHTTP tells which hosts speak plain HTTP; default: loopback.
	PlainHTTP func(host string) bool
}

// Loopback reports whether host (with optional port) is a loopback name.
func Loopback(host string) bool {
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = host
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

const manifestAccept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json"

// Probe implements Prober.
func (p *HTTPProber) Probe(ctx context.Context, host, repo, ref, user, password, platform string) ProbeResult {
	var r ProbeResult
	c := p.Client
	if c == nil {
		c = &http.Client{Timeout: 15 * time.Second}
	}
	plain := Loopback
	if p.PlainHTTP != nil {
		plain = p.PlainHTTP
	}
	base := "https://" + host
	if plain(host) {
		base = "http://" + host
	}
	do := func(method, u, bearer string, basic bool, accept string) (*http.Response, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, method, u, nil)
		if err != nil {
			return nil, nil, err
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		} else if basic && user != "" {
			req.SetBasicAuth(user, password)
		}
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		res, err := c.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(res.Body, 4<<20))
		return res, b, nil
	}
	res, _, err := do("GET", base+"/v2/", "", false, "")
	if err != nil {
		r.Err = err.Error()
		return r
	}
	r.Reachable = true
	tok := ""
	switch res.StatusCode {
	case http.StatusOK:
		r.AuthOK = true
	case http.StatusUnauthorized:
		realm, service := parseChallenge(res.Header.Get("WWW-Authenticate"))
		if realm == "" {
			// Basic auth registries: the credentials go with each request.
			if res, _, err := do("GET", base+"/v2/", "", true, ""); err == nil && res.StatusCode == 200 {
				r.AuthOK = true
			}
			break
		}
		q := url.Values{"service": {service}, "scope": {"repository:" + repo + ":pull"}}
		tres, body, err := do("GET", realm+"?"+q.Encode(), "", true, "")
		if err != nil {
			r.Err = err.Error()
			return r
		}
		if tres.StatusCode != 200 {
			r.AuthStatus, r.AuthMessage = tres.StatusCode, errorMessage(body)
			if ra := tres.Header.Get("Retry-After"); ra != "" {
				r.AuthMessage += " (retry after " + ra + " s)"
			}
			return r
		}
		var tr struct {
			Token       string `json:"token"`
			AccessToken string `json:"access_token"`
		}
		_ = json.Unmarshal(body, &tr)
		tok = tr.Token
		if tok == "" {
			tok = tr.AccessToken
		}
		r.AuthOK = true
	default:
		r.Err = "GET /v2/: " + res.Status
		return r
	}
	mres, mbody, err := do("GET", base+"/v2/"+repo+"/manifests/"+ref, tok, tok == "", manifestAccept)
	if err != nil {
		r.Err = err.Error()
		return r
	}
	switch mres.StatusCode {
	case http.StatusOK:
		r.PullAllowed, r.Found = true, true
	case http.StatusNotFound:
		r.PullAllowed = true
		return r
	case http.StatusUnauthorized, http.StatusForbidden:
		return r
	default:
		r.Err = "manifest: " + mres.Status
		return r
	}
	r.PlatformOK, r.Platforms = p.platform(mres.Header.Get("Content-Type"), mbody, platform, func(digest string) []byte {
		_, b, err := do("GET", base+"/v2/"+repo+"/blobs/"+digest, tok, tok == "", "")
		if err != nil {
			return nil
		}
		return b
	})
	return r
}

// platform checks whether a manifest or index offers the platform.
func (p *HTTPProber) platform(mediaType string, body []byte, want string, blob func(string) []byte) (bool, []string) {
	var m struct {
		MediaType string `json:"mediaType"`
		Manifests []struct {
			Platform *struct {
				OS           string `json:"os"`
				Architecture string `json:"architecture"`
				Variant      string `json:"variant"`
			} `json:"platform"`
		} `json:"manifests"`
		Config struct {
			Digest string `json:"digest"`
		} `json:"config"`
	}
	if json.Unmarshal(body, &m) != nil {
		return false, nil
	}
	var have []string
	if len(m.Manifests) > 0 || strings.Contains(mediaType, "index") || strings.Contains(mediaType, "list") {
		for _, d := range m.Manifests {
			if d.Platform == nil {
				continue
			}
			have = append(have, platformString(d.Platform.OS, d.Platform.Architecture, d.Platform.Variant))
		}
	} else {
		var cfg struct {
			OS           string `json:"os"`
			Architecture string `json:"architecture"`
			Variant      string `json:"variant"`
		}
		if json.Unmarshal(blob(m.Config.Digest), &cfg) != nil || cfg.OS == "" {
			return true, nil // not an image config (an artifact): nothing to check
		}
		have = append(have, platformString(cfg.OS, cfg.Architecture, cfg.Variant))
	}
	for _, h := range have {
		if h == want || strings.HasPrefix(h, want+"/") {
			return true, have
		}
	}
	return false, have
}

func platformString(os, arch, variant string) string {
	if variant != "" {
		return os + "/" + arch + "/" + variant
	}
	return os + "/" + arch
}

// parseChallenge extracts realm and service of a Bearer challenge.
func parseChallenge(h string) (realm, service string) {
	rest, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return "", ""
	}
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"`)
		switch k {
		case "realm":
			realm = v
		case "service":
			service = v
		}
	}
	return realm, service
}

// errorMessage extracts the message of a registry or token error body.
func errorMessage(body []byte) string {
	var e struct {
		Errors []struct{ Message string } `json:"errors"`
		Error  string                     `json:"error"`
		Detail string                     `json:"details"`
	}
	if json.Unmarshal(body, &e) == nil {
		if len(e.Errors) > 0 {
			return e.Errors[0].Message
		}
		if e.Error != "" {
			return e.Error
		}
	}
	if len(body) > 200 {
		body = body[:200]
	}
	return strings.TrimSpace(string(body))
}
