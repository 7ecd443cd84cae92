// Package ext stands where Traefik's nested module github.com/traefik/traefik/dynamic/ext sits
// in its repository (pkg/config/dynamic/ext). Traefik's go.mod replaces that module with the
// folder, and the Go proxy's zip of traefik/v3 leaves nested modules out, so this build supplies
// it. In open-source Traefik it is an empty extension point: three empty structs inlined into
// the dynamic configuration, and a conversion between two of them.
package ext

// HTTP extends dynamic.HTTP; empty in open-source Traefik.
type HTTP struct{}

// Router extends dynamic.Router; empty in open-source Traefik.
type Router struct{}

// RouterIng extends the ingress provider's router annotations; empty in open-source Traefik.
type RouterIng struct{}

// ToRouter converts the ingress extension to the router's.
func (RouterIng) ToRouter() Router { return Router{} }
