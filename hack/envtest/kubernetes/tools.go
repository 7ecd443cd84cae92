//go:build tools

// Package tools pins the Kubernetes binaries the test control plane is built from.
// It is never compiled; it only makes `go mod tidy` record their dependencies.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
