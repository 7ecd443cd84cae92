//go:build tools

// Package tools pins KServe's controller manager, which the real-KServe tests run against the
// test control plane. It is never compiled; it only makes `go mod tidy` record its dependencies.
package tools

import (
	_ "github.com/kserve/kserve/cmd/manager"
)
