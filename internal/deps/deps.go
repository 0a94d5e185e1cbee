//go:build deps

// Package deps pins the chosen dependencies until code imports them.
// Removed once every dependency is imported by real code.
package deps

import (
	_ "github.com/lestrrat-go/jwx/v2/jws"
	_ "github.com/redis/go-redis/v9"
	_ "go.yaml.in/yaml/v3"
	_ "google.golang.org/genproto/googleapis/rpc/errdetails"
)
