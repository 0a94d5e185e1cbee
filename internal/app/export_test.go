package app

import "github.com/chainbroker/chainbroker/token"

// The tests of this package are external (package app_test): they start
// their broker with internal/apptest, which imports app. These are the
// internals they test directly.
var (
	BuildDomains      = buildDomains
	ClientCredentials = clientCredentials
	BuildStore        = buildStore
)

// HasAuditExport reports whether Build made an audit exporter.
func HasAuditExport(a *App) bool { return a.export != nil }

// CallerJWTKeys is the verifier (and key cache) of callers.jwt of the
// running configuration; nil without callers.jwt.
func CallerJWTKeys(a *App) *token.Verifier { return a.live.cur.Load().jwtKeys }
