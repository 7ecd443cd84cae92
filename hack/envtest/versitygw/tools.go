//go:build tools

// Package tools pins versitygw, the S3-compatible server (POSIX back end) that the staging tests
// upload artifacts to. It is never compiled; it only makes `go mod tidy` record its dependencies.
package tools

import _ "github.com/versity/versitygw/cmd/versitygw"
