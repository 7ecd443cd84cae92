//go:build tools

// Package tools pins the helm CLI used by the chart tests.
// It is never compiled; it only makes `go mod tidy` record its dependencies.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
