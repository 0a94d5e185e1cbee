package app

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
