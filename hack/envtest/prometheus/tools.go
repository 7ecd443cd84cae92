//go:build tools

// Package tools pins Prometheus, built with Kubernetes service discovery for the KServe cluster's
// tests (Debian's package leaves that discovery out). It is never compiled; it only makes
// `go mod tidy` record Prometheus's dependencies.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
)
