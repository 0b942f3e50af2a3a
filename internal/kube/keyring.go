// Package kube holds what berth knows about Kubernetes image pulls: the
// docker config a pull Secret carries, the kubelet's rules for matching its
// entries to an image, and the Secret objects berth writes.
package kube

import (
	"net"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
)

// defaultRegistryHost is where images without a registry come from, and
// the key their credentials are filed under.
const defaultRegistryHost = "index.docker.io"

// KeyringKey turns a docker config "auths" key into the form the kubelet
// indexes it under: the scheme dropped, a leading /v1/ or /v2/ path
// stripped, host plus any remaining path.
func KeyringKey(key string) (string, bool) {
	value := key
	if !strings.HasPrefix(value, "https://") && !strings.HasPrefix(value, "http://") {
		value = "https://" + value
	}
	parsed, err := url.Parse(value)
	if err != nil || parsed.Host == "" {
		return "", false
	}
	p := parsed.Path
	if strings.HasPrefix(p, "/v2/") || strings.HasPrefix(p, "/v1/") {
		p = p[3:]
	}
	if p != "" && p != "/" {
		return parsed.Host + p, true
	}
	return parsed.Host, true
}

// parseSchemeless parses "host[:port]/path" as an https URL.
func parseSchemeless(s string) (*url.URL, error) {
	return url.Parse("https://" + s)
}

// splitHost splits a URL's host into its dot-separated labels and port.
func splitHost(u *url.URL) ([]string, string) {
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		host, port = u.Host, ""
	}
	return strings.Split(host, "."), port
}

// KeyMatches reports whether a keyring key (see KeyringKey) applies to an
// image repository ("host[:port]/path", no tag), by the kubelet's rules:
// the ports must be equal (so reg:5000 never matches reg); the hosts must
// have as many labels, each matched as a glob (so *.example.com matches
// a.example.com but not a.b.example.com); and the key's path must be a
// plain string prefix of the image's path.
func KeyMatches(key, image string) bool {
	glob, err1 := parseSchemeless(key)
	target, err2 := parseSchemeless(image)
	if err1 != nil || err2 != nil {
		return false
	}
	gParts, gPort := splitHost(glob)
	tParts, tPort := splitHost(target)
	if gPort != tPort || len(gParts) != len(tParts) {
		return false
	}
	for i, g := range gParts {
		if ok, err := filepath.Match(g, tParts[i]); err != nil || !ok {
			return false
		}
	}
	return strings.HasPrefix(target.Path, glob.Path)
}

// ImageRepository strips the tag and digest of an image reference and
// resolves Docker Hub short names, giving what the kubelet looks up:
// "busybox" becomes "docker.io/library/busybox".
func ImageRepository(image string) string {
	repo := image
	if i := strings.Index(repo, "@"); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	first, rest, found := strings.Cut(repo, "/")
	if !found || !strings.ContainsAny(first, ".:") && first != "localhost" {
		if !found {
			return "docker.io/library/" + repo
		}
		return "docker.io/" + repo
	}
	_ = rest
	return repo
}

// isDefaultRegistry reports whether an image repository is on Docker Hub.
func isDefaultRegistry(repo string) bool {
	host, _, _ := strings.Cut(repo, "/")
	return host == "docker.io" || host == defaultRegistryHost
}

// MatchingKeys returns the keys of a docker config's auths that the kubelet
// would try for image, in the order it tries them (most specific first);
// for Docker Hub images without a match, the index.docker.io entry.
func MatchingKeys(keys []string, image string) []string {
	repo := ImageRepository(image)
	type entry struct{ key, norm string }
	var entries []entry
	for _, k := range keys {
		if n, ok := KeyringKey(k); ok {
			entries = append(entries, entry{k, n})
		}
	}
	// The kubelet sorts keys in reverse lexical order, so that longer,
	// more specific ones come first.
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].norm > entries[j].norm })
	var out []string
	for _, e := range entries {
		if KeyMatches(e.norm, repo) {
			out = append(out, e.key)
		}
	}
	if len(out) == 0 && isDefaultRegistry(repo) {
		for _, e := range entries {
			if e.norm == defaultRegistryHost {
				out = append(out, e.key)
			}
		}
	}
	return out
}

// SuggestedKey is the auths key that would match image: its registry host
// with port, exactly.
func SuggestedKey(image string) string {
	repo := ImageRepository(image)
	host, _, _ := strings.Cut(repo, "/")
	if host == "docker.io" {
		return "https://index.docker.io/v1/"
	}
	return host
}
