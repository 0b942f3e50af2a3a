package kube

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// This file holds the doctor's checks of one pull Secret: where it is, its
// type and key, the encoding of its value, and the docker config inside.

const (
	typeDockerConfigJSON = "kubernetes.io/dockerconfigjson"
	typeDockercfg        = "kubernetes.io/dockercfg"
)

// checkSecret checks one listed Secret and returns its docker config when
// it parses.
func (r *report) checkSecret(s SecretInput, in Input) *DockerConfig {
	if !r.placed(s, in) {
		return nil
	}
	key, ok := r.dataKey(s)
	if !ok {
		return nil
	}
	payload, ok := r.payload(s, key)
	if !ok {
		return nil
	}
	var cfg *DockerConfig
	if key == ".dockercfg" {
		cfg = r.legacyConfig(s, payload)
	} else {
		cfg = r.dockerConfigJSON(s, payload)
	}
	if cfg != nil {
		r.pass("secret", fmt.Sprintf("secret %s: type, key and encoding are right", s.Name))
	}
	return cfg
}

// placed checks that the Secret exists in the Pod's namespace.
func (r *report) placed(s SecretInput, in Input) bool {
	podNS := in.PodNamespace
	switch {
	case !s.Found && len(in.Unlisted) > 0:
		given := strings.Join(in.Unlisted, ", ")
		r.fail("secret", fmt.Sprintf("secret %s not found; you passed %s, which the Pod does not list (the kubelet looks up exactly the names in imagePullSecrets)", s.Name, given),
			fmt.Sprintf("make the names agree: list %s in the Pod's imagePullSecrets, or name the Secret %s (metadata.name)", in.Unlisted[0], s.Name))
	case !s.Found:
		r.fail("secret", fmt.Sprintf("secret %q not found in namespace %s (the Pod's namespace); the kubelet skips it", s.Name, podNS),
			fmt.Sprintf("create it there: berth secret create %s -n %s ... --apply (Secrets are not shared across namespaces; check the name's spelling)", s.Name, podNS))
	case s.Namespace != "" && podNS != "" && s.Namespace != podNS:
		r.fail("secret", fmt.Sprintf("secret %s is in namespace %s, the Pod in %s", s.Name, s.Namespace, podNS), "create the Secret in namespace "+podNS)
	default:
		return true
	}
	return false
}

// dataKey checks the Secret's type and that it has the type's data key.
func (r *report) dataKey(s SecretInput) (string, bool) {
	var key string
	switch s.Type {
	case typeDockerConfigJSON:
		key = ".dockerconfigjson"
	case typeDockercfg:
		key = ".dockercfg"
	default:
		r.fail("type", fmt.Sprintf("secret %s has type %q; the kubelet only reads kubernetes.io/dockerconfigjson (or kubernetes.io/dockercfg)", s.Name, s.Type),
			"remake it with type kubernetes.io/dockerconfigjson: berth secret create "+s.Name+" ... (the type of a Secret cannot be changed in place)")
		return "", false
	}
	_, inData := s.Data[key]
	_, inString := s.StringData[key]
	if !inData && !inString {
		var have []string
		for k := range s.Data {
			have = append(have, k)
		}
		for k := range s.StringData {
			have = append(have, k)
		}
		r.fail("key", fmt.Sprintf("secret %s of type %s has no %q key (has: %s)", s.Name, s.Type, key, strings.Join(have, ", ")), "name the data item "+key)
		return "", false
	}
	return key, true
}

// payload returns the value under key as the kubelet reads it, checking
// that it is base64 (from a file's data) encoded once.
func (r *report) payload(s SecretInput, key string) ([]byte, bool) {
	var payload []byte
	if str, inString := s.StringData[key]; inString {
		if looksBase64JSON(str) {
			r.fail("encoding", fmt.Sprintf("secret %s: stringData[%q] holds base64; stringData takes the plain JSON", s.Name, key), "put the JSON itself under stringData, or the base64 under data")
			return nil, false
		}
		payload = []byte(str)
	} else if s.Encoded {
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s.Data[key]))
		if err != nil {
			r.fail("encoding", fmt.Sprintf("secret %s: data[%q] is not valid base64 (one unbroken string, no line breaks or spaces)", s.Name, key), "base64 -w0 ~/.docker/config.json")
			return nil, false
		}
		payload = b
	} else {
		payload = []byte(s.Data[key])
	}
	if looksBase64JSON(string(payload)) {
		r.fail("encoding", fmt.Sprintf("secret %s: data[%q] is base64 encoded twice", s.Name, key), "encode the docker config once: base64 -w0 config.json")
		return nil, false
	}
	return payload, true
}

// legacyConfig parses a .dockercfg: the auths map itself, no wrapper.
func (r *report) legacyConfig(s SecretInput, payload []byte) *DockerConfig {
	var auths map[string]AuthEntry
	if err := json.Unmarshal(payload, &auths); err != nil {
		r.fail("json", fmt.Sprintf("secret %s: .dockercfg is not JSON: %v", s.Name, err), "a .dockercfg holds {\"registry\": {\"auth\": ...}}")
		return nil
	}
	if wrapsAuths(payload, auths) {
		r.fail("type", fmt.Sprintf("secret %s has the legacy type kubernetes.io/dockercfg but the new content ({\"auths\": {...}}) in .dockercfg; the kubelet takes \"auths\" for a registry's name and finds no credentials", s.Name),
			fmt.Sprintf("remake it with type kubernetes.io/dockerconfigjson and the data under key .dockerconfigjson (berth secret create %s ...), or drop the \"auths\" wrapper from .dockercfg: {\"REGISTRY\": {\"auth\": ...}}", s.Name))
		return nil
	}
	return &DockerConfig{Auths: auths}
}

// wrapsAuths reports whether a .dockercfg holds a whole docker config
// file: an "auths" key whose value is a map of entries, not an entry.
func wrapsAuths(payload []byte, auths map[string]AuthEntry) bool {
	e, ok := auths["auths"]
	if !ok {
		return false
	}
	if _, _, err := e.Credentials(); !errors.Is(err, ErrNoCredentials) {
		return false
	}
	var cfg struct {
		Auths map[string]json.RawMessage `json:"auths"`
	}
	return json.Unmarshal(payload, &cfg) == nil
}

// dockerConfigJSON parses a .dockerconfigjson: a docker config file.
func (r *report) dockerConfigJSON(s SecretInput, payload []byte) *DockerConfig {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(payload, &probe); err != nil {
		r.fail("json", fmt.Sprintf("secret %s: .dockerconfigjson is not a JSON object: %v", s.Name, err), "it must be the docker config file: {\"auths\": {...}}")
		return nil
	}
	if _, ok := probe["auths"]; !ok {
		r.fail("json", fmt.Sprintf("secret %s: .dockerconfigjson has no \"auths\"", s.Name), "use the whole docker config ({\"auths\": {...}}), not just one entry")
		return nil
	}
	cfg, err := ParseDockerConfig(payload)
	if err != nil {
		r.fail("json", fmt.Sprintf("secret %s: %v", s.Name, err), "remake it: berth secret create "+s.Name)
		return nil
	}
	if onlyInHelper(cfg) {
		r.fail("helper", fmt.Sprintf("secret %s: the docker config keeps its credentials in a credential helper (%s); the kubelet cannot run helpers, so its entries are empty", s.Name, helperNames(cfg)),
			"berth secret create "+s.Name+" --from-docker-config (asks the helper and embeds the credentials)")
		return nil
	}
	return cfg
}

// onlyInHelper reports whether a docker config names a credential helper
// and all its entries are empty.
func onlyInHelper(c *DockerConfig) bool {
	if c.CredsStore == "" && len(c.CredHelpers) == 0 {
		return false
	}
	for _, e := range c.Auths {
		if e != (AuthEntry{}) {
			return false
		}
	}
	return true
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
