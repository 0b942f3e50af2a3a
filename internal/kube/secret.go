package kube

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// PullSecret returns a Secret of type kubernetes.io/dockerconfigjson whose
// .dockerconfigjson is cfg.
func PullSecret(name, namespace string, cfg *DockerConfig) (*corev1.Secret, error) {
	payload, err := cfg.JSON()
	if err != nil {
		return nil, fmt.Errorf("encode docker config: %w", err)
	}
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{"app.kubernetes.io/managed-by": "berth"}},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: payload},
	}, nil
}

// PodUsing returns a Pod running image with the pull Secret, like the
// article's example.
func PodUsing(name, namespace, image, secret string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: corev1.PodSpec{
			Containers:       []corev1.Container{{Name: "app", Image: image, ImagePullPolicy: corev1.PullAlways}},
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: secret}},
		},
	}
}

// Render prints a Kubernetes object as YAML (the default) or JSON.
func Render(obj any, format string) ([]byte, error) {
	b, err := json.MarshalIndent(obj, "", "  ")
	if err != nil {
		return nil, err
	}
	switch format {
	case "json":
		return append(b, '\n'), nil
	case "", "yaml":
		return yaml.JSONToYAML(b)
	}
	return nil, fmt.Errorf("output format %q: want yaml or json", format)
}
