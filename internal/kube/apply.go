package kube

import (
	"context"
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// ErrNoCluster is Client's error when no kubeconfig is found (and the
// process does not run in a cluster).
var ErrNoCluster = errors.New("no Kubernetes cluster is configured (no kubeconfig: set KUBECONFIG or --kubeconfig)")

// Client returns a clientset for a kubeconfig (empty: the usual lookup,
// $KUBECONFIG or ~/.kube/config) and context (empty: the current one), and
// the context's namespace.
func Client(kubeconfig, kubecontext string) (kubernetes.Interface, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: kubecontext})
	cfg, err := cc.ClientConfig()
	if clientcmd.IsEmptyConfig(err) {
		return nil, "", ErrNoCluster
	}
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig: %w (set KUBECONFIG or --kubeconfig)", err)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig namespace: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("kubernetes client: %w", err)
	}
	return cs, ns, nil
}

// ApplySecret creates or updates a pull Secret with server-side apply and,
// when serviceAccount is set, adds it to that ServiceAccount's
// imagePullSecrets.
func ApplySecret(ctx context.Context, cs kubernetes.Interface, s *corev1.Secret, serviceAccount string) error {
	ac := corev1ac.Secret(s.Name, s.Namespace).WithType(s.Type).WithData(s.Data).WithLabels(s.Labels)
	if _, err := cs.CoreV1().Secrets(s.Namespace).Apply(ctx, ac, metav1.ApplyOptions{FieldManager: "berth", Force: true}); err != nil {
		return fmt.Errorf("apply secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	if serviceAccount == "" {
		return nil
	}
	sa, err := cs.CoreV1().ServiceAccounts(s.Namespace).Get(ctx, serviceAccount, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("service account %s/%s: %w", s.Namespace, serviceAccount, err)
	}
	if slices.ContainsFunc(sa.ImagePullSecrets, func(r corev1.LocalObjectReference) bool { return r.Name == s.Name }) {
		return nil
	}
	sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: s.Name})
	if _, err := cs.CoreV1().ServiceAccounts(s.Namespace).Update(ctx, sa, metav1.UpdateOptions{FieldManager: "berth"}); err != nil {
		return fmt.Errorf("add %s to service account %s/%s: %w", s.Name, s.Namespace, serviceAccount, err)
	}
	return nil
}
