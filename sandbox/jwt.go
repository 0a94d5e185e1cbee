package sandbox

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/chainbroker/chainbroker/token"
)

// jwt is a JWS split and decoded without checking its signature: what the
// grant handlers read before (and besides) the signature check. Keycloak's
// JWSInput is lenient in the same ways: two parts (no signature) parse, an
// empty signature parses.
type jwt struct {
	alg, typ, kid string
	claims        jwtClaims
}

// jwtClaims are the claims the sandbox checks; a nil time means absent.
type jwtClaims struct {
	Iss, Sub, JTI, ClientID, Azp, Scope string
	Typ                                 string // the Keycloak "typ" claim (Bearer)
	PreferredUsername                   string
	Aud                                 []string
	Exp, Nbf, Iat                       *int64
}

var b64url = base64.RawURLEncoding

// parseJWT decodes a compact JWS; it fails when the text is not one.
func parseJWT(compact string) (*jwt, error) {
	if len(compact) > token.MaxTokenBytes {
		return nil, fmt.Errorf("token above %d bytes", token.MaxTokenBytes)
	}
	parts := strings.Split(compact, ".")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return nil, fmt.Errorf("not a compact JWS")
	}
	hb, err := b64url.DecodeString(strings.TrimRight(parts[0], "="))
	if err != nil {
		return nil, fmt.Errorf("header is not base64url")
	}
	pb, err := b64url.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return nil, fmt.Errorf("payload is not base64url")
	}
	var h struct {
		Alg string `json:"alg"`
		Typ string `json:"typ"`
		Kid string `json:"kid"`
	}
	if err := decodeObject(hb, &h); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	var raw map[string]json.RawMessage
	if err := decodeObject(pb, &raw); err != nil {
		return nil, fmt.Errorf("claims: %w", err)
	}
	t := &jwt{alg: h.Alg, typ: h.Typ, kid: h.Kid}
	c := &t.claims
	for name, dst := range map[string]*string{
		"iss": &c.Iss, "sub": &c.Sub, "jti": &c.JTI, "client_id": &c.ClientID, "azp": &c.Azp,
		"scope": &c.Scope, "typ": &c.Typ, "preferred_username": &c.PreferredUsername,
	} {
		if v, ok := raw[name]; ok && !isNull(v) {
			if err := json.Unmarshal(v, dst); err != nil {
				return nil, fmt.Errorf("claim %s is not a string", name)
			}
		}
	}
	if v, ok := raw["aud"]; ok && !isNull(v) {
		var one string
		if json.Unmarshal(v, &one) == nil {
			c.Aud = []string{one}
		} else if err := json.Unmarshal(v, &c.Aud); err != nil {
			return nil, fmt.Errorf("claim aud is neither a string nor an array of strings")
		}
	}
	for name, dst := range map[string]**int64{"exp": &c.Exp, "nbf": &c.Nbf, "iat": &c.Iat} {
		if v, ok := raw[name]; ok && !isNull(v) {
			var f float64
			if err := json.Unmarshal(v, &f); err != nil || math.IsNaN(f) || math.Abs(f) > 1<<53 {
				return nil, fmt.Errorf("claim %s is not a number", name)
			}
			n := int64(math.Floor(f))
			*dst = &n
		}
	}
	return t, nil
}

func decodeObject(b []byte, v any) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return fmt.Errorf("not a JSON object")
	}
	return json.Unmarshal(b, v)
}

func isNull(v json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(v), []byte("null")) }

// timePolicy is how a realm judges an assertion's times: Keycloak's
// validateTokenActive, with the identity provider's (or client
// authentication's) clock skew and maximum expiration.
type timePolicy struct {
	skew   int64 // seconds
	maxExp int64 // seconds: maximum age after iat; bound on exp-now without iat
	// maxLifetime also refuses exp - iat above maxExp (sandbox, docs/design.md §2).
	maxLifetime bool
}

// checkTimes returns the refusal description, or "" when the times are fine.
func checkTimes(c *jwtClaims, now int64, p timePolicy) string {
	if c.Exp == nil {
		return DescExpRequired
	}
	exp := *c.Exp
	// Keycloak's isActive: expired when now > exp + skew; not yet when
	// now + skew < nbf.
	if now > exp+p.skew || (c.Nbf != nil && now+p.skew < *c.Nbf) {
		return DescNotActive
	}
	lifespan := exp - now
	if c.Iat == nil {
		if lifespan > p.maxExp {
			return DescNoIssuedAtTooLong
		}
		return ""
	}
	iat := *c.Iat
	if iat-p.skew > now {
		return DescIssuedInFuture
	}
	if min(lifespan, p.maxExp) <= 0 {
		return DescNotActive
	}
	if now > iat+p.maxExp {
		return DescIssuedTooLongAgo
	}
	if p.maxLifetime && exp-iat > p.maxExp+p.skew {
		return DescLifetimeTooLong
	}
	return ""
}

// replayMemory remembers keys (issuer + jti) until a deadline: Keycloak's
// single-use object store. Expired entries are swept now and then, so the
// memory stays proportional to the tokens alive.
type replayMemory struct {
	mu        sync.Mutex
	until     map[string]time.Time
	lastSweep time.Time
}

// mark records key until the deadline; false when key is already recorded
// and not yet expired.
func (m *replayMemory) mark(key string, until, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.until == nil {
		m.until = make(map[string]time.Time)
	}
	if now.Sub(m.lastSweep) > 10*time.Second {
		for k, t := range m.until {
			if !now.Before(t) {
				delete(m.until, k)
			}
		}
		m.lastSweep = now
	}
	if t, ok := m.until[key]; ok && now.Before(t) {
		return false
	}
	m.until[key] = until
	return true
}

// seenSet remembers the last seenCap values (jtis) in arrival order.
type seenSet struct {
	mu   sync.Mutex
	set  map[string]int // value -> number of entries in ring
	ring []string
	next int
}

// seenCap bounds B's memory of received jtis (for Saw).
const seenCap = 1 << 16

func (s *seenSet) add(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.set == nil {
		s.set = make(map[string]int)
	}
	if len(s.ring) < seenCap {
		s.ring = append(s.ring, v)
	} else {
		old := s.ring[s.next]
		if s.set[old]--; s.set[old] <= 0 {
			delete(s.set, old)
		}
		s.ring[s.next] = v
		s.next = (s.next + 1) % seenCap
	}
	s.set[v]++
}

func (s *seenSet) has(v string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.set[v] > 0
}

// newUUID returns a random (version 4) UUID, as Keycloak uses for ids.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// defaultScopes are Keycloak's default client scopes that appear in the
// scope claim.
var defaultScopes = []string{"profile", "email"}

// grantScope returns the granted scope for a requested one: the requested
// scopes in order (openid first when asked for), then the defaults. The
// sandbox has no scope registry; only malformed scope tokens are refused.
func grantScope(requested string) (string, *oauthError) {
	var out, bad []string
	seen := map[string]bool{}
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	fields := strings.Fields(requested)
	for _, s := range fields {
		if !validScopeToken(s) {
			bad = append(bad, s)
		}
	}
	if len(bad) > 0 {
		return "", newError(400, errInvalidScope, DescInvalidScope+strings.Join(bad, " "))
	}
	for _, s := range fields {
		if s == "openid" {
			add(s)
		}
	}
	for _, s := range fields {
		add(s)
	}
	for _, s := range defaultScopes {
		add(s)
	}
	return strings.Join(out, " "), nil
}

// validScopeToken: RFC 6749 §3.3 scope-token = 1*NQCHAR, bounded.
func validScopeToken(s string) bool {
	if len(s) == 0 || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
			return false
		}
	}
	return true
}
