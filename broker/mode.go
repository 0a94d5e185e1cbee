package broker

import "slices"

// The kinds of chain and target the broker knows. Each is a named string
// type whose zero value means its default, so that a Chain or Domain built
// without it keeps today's behaviour; New fills in the default and refuses
// an unknown value. A new value is a constant here, listed in its Valid
// method, and the code that runs it (docs/design.md §6).

// Mode is how hop 1 obtains the JWT authorization grant (Chain.Mode).
type Mode string

const (
	// ModeTokenExchange asks the source domain (RFC 8693): hop_exchange.go.
	// The default.
	ModeTokenExchange Mode = "token_exchange"
	// ModeIssue has the broker sign the grant itself, after verifying the
	// subject token with the source's keys: for sources without token
	// exchange (Auth0, custom identity providers). mode_issue.go.
	ModeIssue Mode = "issue"
	// ModeSubjectToken presents the subject token itself as the grant, for
	// a cloud target when the caller's token is already issued for the
	// cloud (its audience): the broker verifies it with the source's keys
	// and checks it as the cloud would, marks it against replay, audits and
	// caches; no hop 1. kind_cloud.go.
	ModeSubjectToken Mode = "subject_token"
)

// Valid reports whether m is a known mode or the zero value (the default).
func (m Mode) Valid() bool { return known(m, ModeTokenExchange, ModeIssue, ModeSubjectToken) }

// String is m's name; the zero value's is the default's, token_exchange.
func (m Mode) String() string { return orDefault(m, ModeTokenExchange) }

// Profile is the shape of the grant a chain obtains and presents to its
// target (Chain.Profile).
type Profile string

const (
	// ProfileJWTGrant: an RFC 7523 JWT authorization grant, checked by
	// validate.go and presented by hop_jwtbearer.go. The default.
	ProfileJWTGrant Profile = "jwt_grant"
	// ProfileIDJAG: an Identity Assertion JWT Authorization Grant
	// (draft-ietf-oauth-identity-assertion-authz-grant), typ
	// oauth-id-jag+jwt, asked for with requested_token_type id-jag and
	// checked by profile_idjag.go.
	ProfileIDJAG Profile = "id_jag"
)

// Valid reports whether p is a known profile or the zero value (the
// default).
func (p Profile) Valid() bool { return known(p, ProfileJWTGrant, ProfileIDJAG) }

// String is p's name; the zero value's is the default's, jwt_grant.
func (p Profile) String() string { return orDefault(p, ProfileJWTGrant) }

// TargetKind is what a domain is as a chain's target: what hop 2 asks it
// and what it answers (Domain.Kind).
type TargetKind string

const (
	// KindOAuth: an OAuth authorization server answering the RFC 7523 JWT
	// bearer grant with an access token (hop_jwtbearer.go). The default.
	KindOAuth TargetKind = "oauth"
)

// Valid reports whether k is a known target kind or the zero value (the
// default).
func (k TargetKind) Valid() bool { return known(k, KindOAuth, KindAWS, KindAzure, KindGCP) }

// String is k's name; the zero value's is the default's, oauth.
func (k TargetKind) String() string { return orDefault(k, KindOAuth) }

// known reports whether v is the zero value (the default) or one of values.
func known[T ~string](v T, values ...T) bool { return v == "" || slices.Contains(values, v) }

// orDefault is v's name, def's for the zero value.
func orDefault[T ~string](v, def T) string {
	if v == "" {
		return string(def)
	}
	return string(v)
}
