//go:build tools

// Package tools pins the etcd server the test control plane is built from.
// It is never compiled; it only makes `go mod tidy` record its dependencies.
package tools

import _ "go.etcd.io/etcd/server/v3"
