package kube

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Finding is one line of the doctor's report.
type Finding struct {
	Check   string `json:"check"`
	OK      bool   `json:"ok"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

// SecretInput is a pull Secret as the doctor sees it: from a file (Data
// values still base64 text) or from the cluster (Data values decoded).
type SecretInput struct {
	Name      string
	Namespace string
	Found     bool
	Type      string
	// Data holds the values as they would be after the API server decoded
	// them; Encoded tells that they came from a file and are still base64.
	Data       map[string]string
	StringData map[string]string
	Encoded    bool
}

// Input is what the doctor checks: an image, the namespace of the Pod
// that pulls it, and the Secrets the Pod lists, in its order.
type Input struct {
	Image        string
	PodNamespace string
	Secrets      []SecretInput
	Platform     string // os/arch[/variant], default linux/amd64
	// Unlisted names the Secrets the user gave that the Pod does not
	// list: a listed Secret that is not found may be one of them under
	// another name.
	Unlisted []string
}

// Prober asks a registry what the kubelet's pull would meet.
type Prober interface {
	// Probe authenticates as user (anonymous when empty) for a pull of
	// repo on host and looks up the reference.
	Probe(ctx context.Context, host, repo, ref, user, password, platform string) ProbeResult
}

// ProbeResult is the registry's side of a pull.
type ProbeResult struct {
	Reachable   bool
	Err         string
	AuthOK      bool // credentials accepted by the token endpoint
	PullAllowed bool // the token lets the client read the repository
	Found       bool // the tag or digest exists
	PlatformOK  bool // the manifest (or index) has the platform
	Platforms   []string
	// AuthStatus and AuthMessage are the token endpoint's answer when it
	// refused the credentials (401, or 429 when rate-limited).
	AuthStatus  int
	AuthMessage string
}

type entryRef struct {
	secret string
	key    string
	entry  AuthEntry
}

// Diagnose runs the checks in the order the kubelet meets them and returns
// the findings; ok is true only when the pull would succeed.
func Diagnose(ctx context.Context, in Input, p Prober) ([]Finding, bool) {
	rep := &report{}
	fail, pass := rep.fail, rep.pass
	if in.Platform == "" {
		in.Platform = "linux/amd64"
	}
	host, repo, ref := SplitImage(in.Image)
	var entries []entryRef
	malformed, broken := false, false
	for _, s := range in.Secrets {
		cfg := rep.checkSecret(s, in)
		if cfg == nil {
			broken = true
			continue
		}
		for _, k := range cfg.Keys() {
			e := cfg.Auths[k]
			if _, _, err := e.Credentials(); err != nil {
				switch {
				case errors.Is(err, ErrAuthNotBase64), errors.Is(err, ErrAuthNoColon):
					malformed = true
					fail("entry", fmt.Sprintf("secret %s, entry %q: %v; the kubelet stops at it with \"unable to parse auth field\" and pulls nothing for the Pod, even with other valid Secrets", s.Name, k, err),
						fmt.Sprintf("set auth to base64 of user:password (echo -n 'user:password' | base64 -w0), or remake the Secret: berth secret create %s ...", s.Name))
				case errors.Is(err, ErrIdentityOnly):
					fail("entry", fmt.Sprintf("secret %s, entry %q holds only an identity token (docker login to a registry that issues them); the kubelet cannot use it", s.Name, k),
						"make the Secret from a user name and password or a robot: berth secret create "+s.Name+" --robot --scope 'NAMESPACE/*'")
				default:
					fail("entry", fmt.Sprintf("secret %s, entry %q: %v", s.Name, k, err), "docker login again, or berth secret create "+s.Name+" --from-docker-config")
				}
				broken = true
				continue
			}
			entries = append(entries, entryRef{s.Name, k, e})
		}
	}
	if malformed {
		return rep.findings, false
	}
	var keys []string
	byKey := map[string][]entryRef{}
	for _, e := range entries {
		if _, seen := byKey[e.key]; !seen {
			keys = append(keys, e.key)
		}
		byKey[e.key] = append(byKey[e.key], e)
	}
	matching := MatchingKeys(keys, in.Image)
	if len(matching) == 0 && broken {
		// The Secrets' own problems come first; fix those.
		return rep.findings, false
	}
	if len(matching) == 0 {
		if len(in.Secrets) > 0 {
			fail("match", fmt.Sprintf("no entry matches the image's registry %s (entries: %s); the kubelet pulls anonymously", host, strings.Join(keys, ", ")),
				fmt.Sprintf("key the entry exactly %q: a scheme or /v2/ may be added, but host and port must be equal, and the key's path must be a prefix of the image's", SuggestedKey(in.Image)))
		}
		r := p.Probe(ctx, host, repo, ref, "", "", in.Platform)
		return rep.registry(r, host, repo, ref, "anonymous", in.Platform)
	}
	pass("match", fmt.Sprintf("entries matching %s, tried in order: %s", host, strings.Join(matching, ", ")))
	var last ProbeResult
	for _, k := range matching {
		for _, e := range byKey[k] {
			user, pw, _ := e.entry.Credentials()
			last = p.Probe(ctx, host, repo, ref, user, pw, in.Platform)
			if last.AuthOK && last.PullAllowed && last.Found && last.PlatformOK {
				return rep.registry(last, host, repo, ref, fmt.Sprintf("%s (secret %s, entry %q)", user, e.secret, k), in.Platform)
			}
			if !last.Reachable {
				return rep.registry(last, host, repo, ref, user, in.Platform)
			}
			who := fmt.Sprintf("%s (secret %s, entry %q)", user, e.secret, k)
			if !last.AuthOK && last.AuthStatus == 429 {
				fail("rate-limit", fmt.Sprintf("the registry rate-limits logins (429): %s; pulls from this node fail until it passes", last.AuthMessage),
					"find the Secret or node credential that keeps failing (the registry's audit log names it) and fix it; then wait")
				return rep.findings, false
			}
			if !last.AuthOK {
				fail("credentials", fmt.Sprintf("the registry refuses the credentials of %s: %d %s", who, last.AuthStatus, last.AuthMessage),
					"check the password or robot secret; a revoked or expired robot needs a new Secret: berth secret create "+e.secret+" --robot --scope ...")
				continue
			}
			return rep.registry(last, host, repo, ref, who, in.Platform)
		}
	}
	return rep.findings, false
}

// report collects findings.
type report struct{ findings []Finding }

func (r *report) fail(check, msg, fix string) {
	r.findings = append(r.findings, Finding{Check: check, Message: msg, Fix: fix})
}

func (r *report) pass(check, msg string) {
	r.findings = append(r.findings, Finding{Check: check, OK: true, Message: msg})
}

// registry turns the registry's answers into findings.
func (rep *report) registry(r ProbeResult, host, repo, ref, who, platform string) ([]Finding, bool) {
	fail := rep.fail
	switch {
	case !r.Reachable:
		fail("registry", fmt.Sprintf("cannot reach %s: %s", host, r.Err), "check the address, and that the node (containerd hosts.toml) may use plain HTTP or trusts the certificate")
	case !r.AuthOK:
		fail("credentials", fmt.Sprintf("the registry refuses %s", who), "give the Pod a pull Secret for "+host)
	case !r.PullAllowed && who == "anonymous":
		fail("access", fmt.Sprintf("the kubelet pulls %s anonymously (no Secret entry for %s; unless the node has a credential provider for it), and anonymous pulls of %s are refused", repo, host, repo),
			"give the Pod imagePullSecrets for "+host+": berth secret create regcred --robot --scope '"+Namespace0(repo)+"/*' --apply")
	case !r.PullAllowed:
		fail("access", fmt.Sprintf("%s may not pull %s (403 or no pull in the token)", who, repo), "grant pull on "+repo+" (berth namespace add-member NS USER --role reader), or widen the robot's scope")
	case !r.Found:
		fail("reference", fmt.Sprintf("%s:%s does not exist on %s", repo, ref, host), "push it, or fix the tag or digest in the Pod")
	case !r.PlatformOK:
		fail("platform", fmt.Sprintf("%s:%s has no %s image (has %s)", repo, ref, platform, strings.Join(r.Platforms, ", ")), "build and push for "+platform)
	default:
		rep.pass("pull", fmt.Sprintf("%s can pull %s/%s:%s for %s", who, host, repo, ref, platform))
		return rep.findings, true
	}
	return rep.findings, false
}

// SplitImage splits an image reference into registry host, repository
// path and tag or digest (default tag latest), Docker Hub names resolved.
func SplitImage(image string) (host, repo, ref string) {
	full := ImageRepository(image)
	host, repo, _ = strings.Cut(full, "/")
	ref = "latest"
	rest := image
	if i := strings.Index(rest, "@"); i >= 0 {
		ref = rest[i+1:]
	} else if i := strings.LastIndex(rest, ":"); i > strings.LastIndex(rest, "/") {
		ref = rest[i+1:]
	}
	if host == "docker.io" {
		host = "registry-1.docker.io"
	}
	return host, repo, ref
}

// Namespace0 is the first component of a repository path.
func Namespace0(repo string) string {
	ns, _, _ := strings.Cut(repo, "/")
	return ns
}
