package kube

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
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
		cfg := checkSecret(s, in.PodNamespace, fail, pass)
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

// checkSecret checks one listed Secret and returns its docker config when
// it parses.
func checkSecret(s SecretInput, podNS string, fail func(string, string, string), pass func(string, string)) *DockerConfig {
	if !s.Found {
		fail("secret", fmt.Sprintf("secret %q not found in namespace %s (the Pod's namespace); the kubelet skips it", s.Name, podNS),
			fmt.Sprintf("create it there: berth secret create %s -n %s ... --apply (Secrets are not shared across namespaces; check the name's spelling)", s.Name, podNS))
		return nil
	}
	if s.Namespace != "" && podNS != "" && s.Namespace != podNS {
		fail("secret", fmt.Sprintf("secret %s is in namespace %s, the Pod in %s", s.Name, s.Namespace, podNS), "create the Secret in namespace "+podNS)
		return nil
	}
	var key string
	switch s.Type {
	case "kubernetes.io/dockerconfigjson":
		key = ".dockerconfigjson"
	case "kubernetes.io/dockercfg":
		key = ".dockercfg"
	default:
		fail("type", fmt.Sprintf("secret %s has type %q; the kubelet only reads kubernetes.io/dockerconfigjson (or kubernetes.io/dockercfg)", s.Name, s.Type),
			"remake it with type kubernetes.io/dockerconfigjson: berth secret create "+s.Name+" ... (the type of a Secret cannot be changed in place)")
		return nil
	}
	raw, inData := s.Data[key]
	str, inString := s.StringData[key]
	if !inData && !inString {
		var have []string
		for k := range s.Data {
			have = append(have, k)
		}
		for k := range s.StringData {
			have = append(have, k)
		}
		fail("key", fmt.Sprintf("secret %s of type %s has no %q key (has: %s)", s.Name, s.Type, key, strings.Join(have, ", ")), "name the data item "+key)
		return nil
	}
	var payload []byte
	if inString {
		payload = []byte(str)
		if looksBase64JSON(str) {
			fail("encoding", fmt.Sprintf("secret %s: stringData[%q] holds base64; stringData takes the plain JSON", s.Name, key), "put the JSON itself under stringData, or the base64 under data")
			return nil
		}
	} else if s.Encoded {
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(raw))
		if err != nil {
			fail("encoding", fmt.Sprintf("secret %s: data[%q] is not valid base64 (one unbroken string, no line breaks or spaces)", s.Name, key), "base64 -w0 ~/.docker/config.json")
			return nil
		}
		payload = b
	} else {
		payload = []byte(raw)
	}
	if looksBase64JSON(string(payload)) {
		fail("encoding", fmt.Sprintf("secret %s: data[%q] is base64 encoded twice", s.Name, key), "encode the docker config once: base64 -w0 config.json")
		return nil
	}
	if key == ".dockercfg" {
		var auths map[string]AuthEntry
		if err := json.Unmarshal(payload, &auths); err != nil {
			fail("json", fmt.Sprintf("secret %s: .dockercfg is not JSON: %v", s.Name, err), "a .dockercfg holds {\"registry\": {\"auth\": ...}}")
			return nil
		}
		pass("secret", fmt.Sprintf("secret %s: type, key and encoding are right", s.Name))
		return &DockerConfig{Auths: auths}
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(payload, &probe); err != nil {
		fail("json", fmt.Sprintf("secret %s: .dockerconfigjson is not a JSON object: %v", s.Name, err), "it must be the docker config file: {\"auths\": {...}}")
		return nil
	}
	if _, ok := probe["auths"]; !ok {
		fail("json", fmt.Sprintf("secret %s: .dockerconfigjson has no \"auths\"", s.Name), "use the whole docker config ({\"auths\": {...}}), not just one entry")
		return nil
	}
	cfg, err := ParseDockerConfig(payload)
	if err != nil {
		fail("json", fmt.Sprintf("secret %s: %v", s.Name, err), "remake it: berth secret create "+s.Name)
		return nil
	}
	if cfg.CredsStore != "" || len(cfg.CredHelpers) > 0 {
		empty := true
		for _, e := range cfg.Auths {
			if e != (AuthEntry{}) {
				empty = false
			}
		}
		if empty {
			fail("helper", fmt.Sprintf("secret %s: the docker config keeps its credentials in a credential helper (%s); the kubelet cannot run helpers, so its entries are empty", s.Name, helperNames(cfg)),
				"berth secret create "+s.Name+" --from-docker-config (asks the helper and embeds the credentials)")
			return nil
		}
	}
	pass("secret", fmt.Sprintf("secret %s: type, key and encoding are right", s.Name))
	return cfg
}

func helperNames(c *DockerConfig) string {
	var hs []string
	if c.CredsStore != "" {
		hs = append(hs, "credsStore "+c.CredsStore)
	}
	for r, h := range c.CredHelpers {
		hs = append(hs, "credHelpers "+r+"="+h)
	}
	return strings.Join(hs, ", ")
}

// looksBase64JSON reports whether s is base64 of a JSON object.
func looksBase64JSON(s string) bool {
	s = strings.TrimSpace(s)
	if s == "" || strings.HasPrefix(s, "{") {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(s)
	return err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("{"))
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
