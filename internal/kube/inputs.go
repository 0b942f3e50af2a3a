package kube

import (
	"bytes"
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// manifest is the part of a Secret or Pod manifest the doctor reads. Data
// stays text so that broken base64 can be diagnosed, not just refused.
type manifest struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Type       string            `json:"type"`
	Data       map[string]string `json:"data"`
	StringData map[string]string `json:"stringData"`
	Spec       struct {
		Containers []struct {
			Image string `json:"image"`
		} `json:"containers"`
		ImagePullSecrets []struct {
			Name string `json:"name"`
		} `json:"imagePullSecrets"`
	} `json:"spec"`
}

// PodInfo is what the doctor needs of a Pod.
type PodInfo struct {
	Namespace   string
	Images      []string
	PullSecrets []string
}

// ParseManifests reads the Secrets and at most one Pod of a YAML or JSON
// file (several YAML documents allowed).
func ParseManifests(b []byte) ([]SecretInput, *PodInfo, error) {
	var secrets []SecretInput
	var pod *PodInfo
	for _, doc := range bytes.Split(b, []byte("\n---")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var m manifest
		if err := yaml.Unmarshal(doc, &m); err != nil {
			return nil, nil, fmt.Errorf("not a Kubernetes manifest: %w", err)
		}
		switch m.Kind {
		case "Secret":
			secrets = append(secrets, SecretInput{Name: m.Metadata.Name, Namespace: m.Metadata.Namespace, Found: true, Type: m.Type,
				Data: m.Data, StringData: m.StringData, Encoded: true})
		case "Pod":
			pod = &PodInfo{Namespace: m.Metadata.Namespace}
			for _, c := range m.Spec.Containers {
				pod.Images = append(pod.Images, c.Image)
			}
			for _, s := range m.Spec.ImagePullSecrets {
				pod.PullSecrets = append(pod.PullSecrets, s.Name)
			}
		default:
			return nil, nil, fmt.Errorf("kind %q: want Secret or Pod", m.Kind)
		}
	}
	return secrets, pod, nil
}

// ClusterSecret reads a Secret from the cluster; a missing one comes back
// with Found false.
func ClusterSecret(ctx context.Context, cs kubernetes.Interface, ns, name string) (SecretInput, error) {
	s, err := cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return SecretInput{Name: name, Namespace: ns}, nil
	}
	if err != nil {
		return SecretInput{}, fmt.Errorf("read secret %s/%s: %w", ns, name, err)
	}
	in := SecretInput{Name: name, Namespace: ns, Found: true, Type: string(s.Type), Data: map[string]string{}, StringData: s.StringData}
	for k, v := range s.Data {
		in.Data[k] = string(v)
	}
	return in, nil
}

// ClusterPod reads a Pod from the cluster.
func ClusterPod(ctx context.Context, cs kubernetes.Interface, ns, name string) (*PodInfo, error) {
	p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("read pod %s/%s: %w", ns, name, err)
	}
	info := &PodInfo{Namespace: ns}
	for _, c := range p.Spec.Containers {
		info.Images = append(info.Images, c.Image)
	}
	for _, s := range p.Spec.ImagePullSecrets {
		info.PullSecrets = append(info.PullSecrets, s.Name)
	}
	return info, nil
}
