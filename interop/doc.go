// Package interop runs identity chains through real third-party authorization
// servers: the `chainbroker serve` binary, with the sandbox's domain A as the
// source of the assertions and Ory Hydra v2.3.0 as domain B (the target of the
// RFC 7523 jwt-bearer grant).
//
// It is a module of its own so that Hydra's dependency graph, pinned here as
// a `tool`, never enters the main module. `make interop` (in the repository
// root) builds Hydra once into interop/.bin/hydra and runs these tests; see
// docs/interop.md for the configuration used on both sides and for how Hydra
// differs from Keycloak.
//
// Every process the tests start (Hydra, chainbroker) listens on free loopback
// ports in a temporary directory and is stopped in t.Cleanup; every wait has
// a deadline.
package interop
