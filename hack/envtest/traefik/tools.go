//go:build tools

// Package tools pins Traefik, the Gateway API implementation the real-KServe tests route through.
// It is never compiled; it only makes `go mod tidy` record Traefik's dependencies.
package tools

import (
	_ "github.com/traefik/traefik/v3/cmd/traefik"
)
