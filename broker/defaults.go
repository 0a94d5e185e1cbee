package broker

import "time"

// Defaults New fills in for zero values. They are the one definition of
// each default: config documents and applies the same values by naming
// these constants, never by repeating the numbers.
const (
	// DefaultDomainTimeout bounds each call to a domain's endpoints
	// (Domain.Timeout).
	DefaultDomainTimeout = 10 * time.Second
	// DefaultMaxLifetime bounds exp - iat of a grant (AssertionPolicy.MaxLifetime).
	DefaultMaxLifetime = 300 * time.Second
	// DefaultCacheMargin: a cached token is reused only while it has at
	// least this long left (CachePolicy.Margin).
	DefaultCacheMargin = 30 * time.Second
	// DefaultMaxAttempts, DefaultBreakerFailures and DefaultBreakerCooldown
	// are Resilience's defaults.
	DefaultMaxAttempts     = 3
	DefaultBreakerFailures = 5
	DefaultBreakerCooldown = 10 * time.Second
	// DefaultAssertionLifetime of the grants the broker issues
	// (Chain.AssertionLifetime).
	DefaultAssertionLifetime = 60 * time.Second
	// DefaultMaxScopes, DefaultMaxResources and DefaultMaxFieldLength are
	// Limits' defaults; Limits.MaxTokenBytes defaults to token.MaxTokenBytes.
	DefaultMaxScopes      = 32
	DefaultMaxResources   = 16
	DefaultMaxFieldLength = 1024
)
