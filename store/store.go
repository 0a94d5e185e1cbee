// Package store holds chainbroker's two pieces of shared state behind small
// interfaces: a replay guard for assertion jti markers and an append-only
// audit log. Backends live in sub-packages (memory, redis) and all pass the
// conformance suite in store/storetest.
//
// Nothing in this package or its backends ever sees a raw token: replay
// markers are keyed by a SHA-256 digest and audit events carry hashes only.
package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"time"
)

// Sentinel errors. Backends wrap their own failures into these so that no
// caller ever sees a driver type (go-redis, ...). Use errors.Is.
var (
	// ErrReplayed: the replay key was already marked and its marker has not expired.
	ErrReplayed = errors.New("store: replay marker already present")
	// ErrNotFound: no audit event has that id.
	ErrNotFound = errors.New("store: not found")
	// ErrUnavailable: the backend could not be reached or did not answer in
	// time. The operation may or may not have taken effect; callers fail closed.
	ErrUnavailable = errors.New("store: unavailable")
	// ErrInvalidArgument: the request was malformed (empty key, bad page token,
	// deadline in the past, ...). Wrapped with a message naming the argument.
	ErrInvalidArgument = errors.New("store: invalid argument")
)

// IsRetryable reports whether err is a transient backend failure worth retrying.
func IsRetryable(err error) bool { return errors.Is(err, ErrUnavailable) }

// ReplayKey identifies one assertion as seen by one target domain.
type ReplayKey struct {
	Target string // target domain name
	Issuer string // assertion `iss`
	JTI    string // assertion `jti`
}

// Digest is the hex SHA-256 of the key's parts, each length-prefixed so that
// no two distinct keys share a digest. Backends store only the digest.
func (k ReplayKey) Digest() string {
	h := sha256.New()
	for _, p := range []string{k.Target, k.Issuer, k.JTI} {
		h.Write([]byte(strconv.Itoa(len(p))))
		h.Write([]byte{':'})
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ReplayGuard remembers assertions already presented.
type ReplayGuard interface {
	// Mark records key until the deadline `until`. It returns ErrReplayed if
	// key is already marked and not yet expired, ErrInvalidArgument if key has
	// an empty part or until is not in the future, ErrUnavailable if the
	// backend failed. Mark is atomic: of concurrent Marks of one key, exactly
	// one succeeds.
	Mark(ctx context.Context, key ReplayKey, until time.Time) error
}

// Outcome of a chain.
type Outcome int

const (
	OutcomeUnspecified Outcome = iota // as a filter: any outcome
	OutcomeSuccess
	OutcomeFailure
	OutcomeCacheHit
)

func (o Outcome) String() string {
	switch o {
	case OutcomeSuccess:
		return "success"
	case OutcomeFailure:
		return "failure"
	case OutcomeCacheHit:
		return "cache_hit"
	default:
		return "unspecified"
	}
}

// Hop records one token endpoint call.
type Hop struct {
	Domain           string        `json:"domain"`
	Endpoint         string        `json:"endpoint"`
	GrantType        string        `json:"grant_type"`
	Duration         time.Duration `json:"duration"`
	AssertionJTIHash string        `json:"assertion_jti_hash,omitempty"`
}

// Event is one audit record. It never holds a token or a secret.
type Event struct {
	ID                       string    `json:"id"`   // assigned by Append
	Time                     time.Time `json:"time"` // set by the caller; Append sets it to now when zero
	Caller                   string    `json:"caller,omitempty"`
	Subject                  string    `json:"subject,omitempty"`
	SourceDomain             string    `json:"source_domain,omitempty"`
	TargetDomain             string    `json:"target_domain,omitempty"`
	Scopes                   []string  `json:"scopes,omitempty"`
	Outcome                  Outcome   `json:"outcome"`
	Reason                   string    `json:"reason,omitempty"`
	UpstreamError            string    `json:"upstream_error,omitempty"`
	UpstreamErrorDescription string    `json:"upstream_error_description,omitempty"`
	Message                  string    `json:"message,omitempty"`
	Hops                     []Hop     `json:"hops,omitempty"`
	SubjectTokenHash         string    `json:"subject_token_hash,omitempty"`
	AssertionJTIHash         string    `json:"assertion_jti_hash,omitempty"`
	AssertionIssuer          string    `json:"assertion_issuer,omitempty"`
	AssertionAudience        []string  `json:"assertion_audience,omitempty"`
	Mode                     string    `json:"mode,omitempty"`               // token_exchange or issue
	MappedSubject            string    `json:"mapped_subject,omitempty"`     // issue mode: the grant's sub
	TranscribedClaims        []string  `json:"transcribed_claims,omitempty"` // issue mode: claim names copied or added
	// SubjectVerified: Subject was read from a token whose signature the
	// broker checked (the subject token, or the grant from hop 1).
	SubjectVerified bool `json:"subject_verified,omitempty"`
	// UnverifiedSubject is the `sub` a subject token claimed when the chain
	// failed before any token naming the subject verified (truncated); it is
	// never in Subject, so a subject filter finds only verified subjects.
	UnverifiedSubject string `json:"unverified_subject,omitempty"`
	// Actor is the calling agent the grant names in `act` (token exchange
	// with an actor token, or issue mode), when there is one.
	Actor string `json:"actor,omitempty"`
	// ActorTokenHash is the hex SHA-256 of the actor token sent in hop 1
	// (the caller's own or the one the broker signed).
	ActorTokenHash string `json:"actor_token_hash,omitempty"`
	// Profile is the chain's grant profile: jwt_grant or id_jag.
	Profile string `json:"profile,omitempty"`
	// DPoPJKT is the RFC 7638 thumbprint of the caller's DPoP key (a public
	// key's hash, not a secret), when the chain asked for a bound token.
	DPoPJKT string `json:"dpop_jkt,omitempty"`
	// AWSAccessKeyIDHash is the hex SHA-256 of the AWS access key id a
	// chain to an aws target handed out; the credentials themselves are
	// never recorded.
	AWSAccessKeyIDHash string `json:"aws_access_key_id_hash,omitempty"`
}

// Filter selects audit events; zero fields match everything.
type Filter struct {
	Subject      string
	Caller       string
	SourceDomain string
	TargetDomain string
	Outcome      Outcome   // OutcomeUnspecified: any
	Start        time.Time // inclusive; zero: no lower bound
	End          time.Time // exclusive; zero: no upper bound
}

// Match reports whether e passes f. Backends may use it for the filtering
// they cannot push down.
func (f Filter) Match(e *Event) bool {
	switch {
	case f.Subject != "" && e.Subject != f.Subject,
		f.Caller != "" && e.Caller != f.Caller,
		f.SourceDomain != "" && e.SourceDomain != f.SourceDomain,
		f.TargetDomain != "" && e.TargetDomain != f.TargetDomain,
		f.Outcome != OutcomeUnspecified && e.Outcome != f.Outcome,
		!f.Start.IsZero() && e.Time.Before(f.Start),
		!f.End.IsZero() && !e.Time.Before(f.End):
		return false
	}
	return true
}

// Page bounds.
const (
	DefaultPageSize = 50
	MaxPageSize     = 1000
)

// AuditLog is an append-only, time-ordered trail of events.
type AuditLog interface {
	// Append stores e durably (as far as the backend is configured to) and
	// returns its id. Ids are ordered by time of append, and e.ID is ignored.
	Append(ctx context.Context, e *Event) (id string, err error)
	// List returns the events matching f, newest first, at most pageSize of
	// them (0 means DefaultPageSize; above MaxPageSize is clamped), with ids
	// below pageToken (empty: from the newest; any "<ms>-<seq>" id is a
	// token, for any filter). A malformed pageToken gives
	// ErrInvalidArgument.
	//
	// Page guarantee (store.CollectPage): the page holds pageSize events
	// unless no further event matches (then next is empty), or the call
	// examined more than ListBudget index entries first; such a short page
	// still holds at least one event. next is set only when one more
	// matching event is known, so following it never gives an empty page.
	// next resumes exactly after the page's last event, whatever is
	// appended meanwhile (new events are newer than any page token); it is
	// an id bound, not necessarily an event's id.
	//
	// Backends index the filter fields (Subject, Caller, SourceDomain,
	// TargetDomain, Outcome) and find a time range's events by id range, so
	// that the cost follows the page (see each backend), never the trail. A
	// time range finds every event whose Time lies in it, however far from
	// its append time.
	List(ctx context.Context, f Filter, pageSize int, pageToken string) (events []Event, next string, err error)
	// Get returns the event with that id, or ErrNotFound.
	Get(ctx context.Context, id string) (Event, error)
}

// TokenCache holds opaque entries (the broker encrypts them before they get
// here) until a deadline, and short leases that let one process of many fill
// an entry while the others wait.
type TokenCache interface {
	// CacheGet returns the entry under key, or ErrNotFound (also once expired).
	CacheGet(ctx context.Context, key string) ([]byte, error)
	// CachePut stores value under key until the deadline (ErrInvalidArgument
	// if it is not in the future or key is empty).
	CachePut(ctx context.Context, key string, value []byte, until time.Time) error
	// CacheLease takes the lease on key for ttl: true for exactly one of
	// concurrent takers, false while another holds it.
	CacheLease(ctx context.Context, key string, ttl time.Duration) (bool, error)
}

// Store bundles the interfaces with health checking and release of resources.
type Store interface {
	ReplayGuard
	AuditLog
	TokenCache
	// Ping reports whether the backend is reachable (ErrUnavailable if not).
	Ping(ctx context.Context) error
	// Close releases the backend's resources.
	Close() error
}
