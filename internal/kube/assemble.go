package kube

import (
	"bytes"
	"cmp"
	"errors"
	"slices"
)

// ErrNoImage is Assemble's answer when neither the request nor its Pod
// names an image.
var ErrNoImage = errors.New("no image to check")

// Request is what a doctor is asked, as the user gave it: the CLI from
// files, flags and the cluster, the console from pasted manifests. Both
// turn it into Diagnose's Input with Assemble, so that they check the same
// Secrets for the same inputs.
type Request struct {
	// Image to check; empty: the Pod's first image.
	Image string
	// Files are Secrets given as manifests (files, or pasted).
	Files []SecretInput
	// Pod is a Pod given as a manifest or read from a cluster (nil: none).
	Pod *PodInfo
	// Names are Secrets named without their content (berth doctor
	// --secret), read with Lookup.
	Names []string
	// Namespace is the Pod's namespace as the user gave it (-n); ContextNS
	// the kubeconfig context's.
	Namespace, ContextNS string
	// Platform to check (default linux/amd64).
	Platform string
	// Lookup reads a Secret from the cluster (nil without one: a Secret
	// named but not given is then reported missing).
	Lookup func(namespace, name string) (SecretInput, error)
}

// AddManifests adds the Secrets and the Pod of manifests (YAML or JSON,
// several documents), as a file or a pasted text gives them; a later Pod
// replaces an earlier one. Blank text adds nothing.
func (req *Request) AddManifests(b []byte) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	secrets, pod, err := ParseManifests(b)
	if err != nil {
		return err
	}
	req.Files = append(req.Files, secrets...)
	if pod != nil {
		req.Pod = pod
	}
	return nil
}

// Assemble returns the Input Diagnose checks: the image, the namespace the
// kubelet reads the Secrets in, the Secrets it would use (in the Pod's
// order), and the Secrets given that the Pod does not list.
func Assemble(req Request) (Input, error) {
	in := Input{Image: req.Image, PodNamespace: podNamespace(req.Namespace, req.Pod, req.Files, req.ContextNS), Platform: req.Platform}
	if in.Image == "" && req.Pod != nil && len(req.Pod.Images) > 0 {
		in.Image = req.Pod.Images[0]
	}
	if in.Image == "" {
		return Input{}, ErrNoImage
	}
	var lookup func(string) (SecretInput, error)
	if req.Lookup != nil {
		lookup = func(name string) (SecretInput, error) { return req.Lookup(in.PodNamespace, name) }
	}
	var err error
	in.Secrets, in.Unlisted, err = pullSecrets(req.Names, req.Pod, req.Files, lookup)
	return in, err
}

// podNamespace is the namespace the kubelet reads the Secrets in: the one
// given, else the Pod's, else (no Pod) the first Secret file's, else the
// kubeconfig context's, else default.
func podNamespace(given string, pod *PodInfo, files []SecretInput, contextNS string) string {
	if pod != nil {
		return cmp.Or(given, pod.Namespace, contextNS, "default")
	}
	fileNS := ""
	for _, s := range files {
		if s.Namespace != "" {
			fileNS = s.Namespace
			break
		}
	}
	return cmp.Or(given, fileNS, contextNS, "default")
}

// pullSecrets returns the Secrets the kubelet would use, in the Pod's
// order (from files first, else from the cluster), and, with a Pod, the
// names of the Secrets given that it does not list.
func pullSecrets(named []string, pod *PodInfo, files []SecretInput, lookup func(string) (SecretInput, error)) ([]SecretInput, []string, error) {
	names := named
	if pod != nil {
		names = pod.PullSecrets
	} else if len(named) == 0 {
		return files, nil, nil
	}
	byName := map[string]SecretInput{}
	for _, s := range files {
		byName[s.Name] = s
	}
	var secrets []SecretInput
	for _, name := range names {
		s, ok := byName[name]
		switch {
		case ok:
		case lookup == nil:
			s = SecretInput{Name: name}
		default:
			var err error
			if s, err = lookup(name); err != nil {
				return nil, nil, err
			}
		}
		secrets = append(secrets, s)
	}
	var unlisted []string
	if pod != nil {
		for _, s := range files {
			unlisted = appendUnlisted(unlisted, names, s.Name)
		}
		for _, name := range named {
			unlisted = appendUnlisted(unlisted, names, name)
		}
	}
	return secrets, unlisted, nil
}

// appendUnlisted adds name to unlisted unless listed or already there.
func appendUnlisted(unlisted, listed []string, name string) []string {
	if slices.Contains(listed, name) || slices.Contains(unlisted, name) {
		return unlisted
	}
	return append(unlisted, name)
}
