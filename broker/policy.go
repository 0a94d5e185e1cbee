package broker

import (
	"fmt"
	"slices"

	"github.com/chainbroker/chainbroker/token"
)

// Role names.
const (
	// RoleAudit may read the audit trail.
	RoleAudit = "audit"
)

// AnyScope in ChainGrant.Scopes allows every scope.
const AnyScope = "*"

// Policy says, deny by default, which chains each caller may use. A caller
// absent from the policy may do nothing.
type Policy struct {
	Callers []CallerGrant
}

// CallerGrant is what one caller (by authenticated name) may do.
type CallerGrant struct {
	Caller string
	Roles  []string
	Chains []ChainGrant
}

// ChainGrant permits one (source, target) chain.
type ChainGrant struct {
	Source, Target string
	// Scopes the caller may request explicitly; AnyScope allows all. The
	// chain's configured default scopes are always allowed.
	Scopes []string
	// Resources (RFC 8707) and Audiences the caller may send in hop 1
	// besides the chain's own (Chain.Resource, Chain.Audience), which are
	// always allowed; AnyScope ("*") allows any.
	Resources []string
	Audiences []string
	// ActorToken lets the caller send its own actor_token on a chain whose
	// transcription names the caller in `act` (Transcription.Act); without
	// it such a request is refused (ACTOR_TOKEN_NOT_ALLOWED).
	ActorToken bool
	// Conditions on the (verified) subject token: when set, its azp or
	// client_id must be one of these. They require subject token
	// verification on the source domain.
	SubjectAZP []string
}

type compiledPolicy struct {
	callers map[string]*CallerGrant
}

func compilePolicy(p Policy, b *Broker) (*compiledPolicy, []error) {
	cp := &compiledPolicy{callers: map[string]*CallerGrant{}}
	var errs []error
	for i := range p.Callers {
		g := p.Callers[i]
		if g.Caller == "" {
			errs = append(errs, fmt.Errorf("broker: policy %d: caller name required", i))
			continue
		}
		if _, dup := cp.callers[g.Caller]; dup {
			errs = append(errs, fmt.Errorf("broker: policy %d: duplicate caller %q", i, g.Caller))
			continue
		}
		for j, c := range g.Chains {
			if b.chains[[2]string{c.Source, c.Target}] == nil {
				errs = append(errs, fmt.Errorf("broker: policy for %q, chain %d: no chain %q -> %q is configured", g.Caller, j, c.Source, c.Target))
			}
			if len(c.SubjectAZP) > 0 {
				if src := b.domains[c.Source]; src != nil && !src.VerifySubjectToken {
					errs = append(errs, fmt.Errorf("broker: policy for %q, chain %d: subject conditions need verify_subject_token on domain %q", g.Caller, j, c.Source))
				}
			}
		}
		cp.callers[g.Caller] = &g
	}
	return cp, errs
}

func (p *compiledPolicy) grant(caller, src, tgt string) *ChainGrant {
	g := p.callers[caller]
	if g == nil {
		return nil
	}
	for i := range g.Chains {
		if c := &g.Chains[i]; c.Source == src && c.Target == tgt {
			return c
		}
	}
	return nil
}

// HasRole reports whether the policy gives caller the role.
func (b *Broker) HasRole(caller, role string) bool {
	g := b.policy.callers[caller]
	return g != nil && slices.Contains(g.Roles, role)
}

// ChainsFor returns the chains caller may use, in configuration order.
func (b *Broker) ChainsFor(caller string) []Chain {
	var out []Chain
	for _, c := range b.chainSeq {
		if b.policy.grant(caller, c.Source, c.Target) != nil {
			out = append(out, *c)
		}
	}
	return out
}

// DomainsFor returns the domains that appear in caller's chains.
func (b *Broker) DomainsFor(caller string) []Domain {
	used := map[string]bool{}
	for _, c := range b.ChainsFor(caller) {
		used[c.Source], used[c.Target] = true, true
	}
	var out []Domain
	for _, n := range b.order {
		if used[n] {
			out = append(out, *b.domains[n])
		}
	}
	return out
}

// authorize finds the caller's grant for the chain (deny by default) and
// checks the requested scopes, resources, audience and actor token against it.
func (r *chainRun) authorize(src, tgt *Domain, chain *Chain) (*ChainGrant, error) {
	g := r.b.policy.grant(r.req.Caller, src.Name, tgt.Name)
	if g == nil {
		return nil, fail(ReasonChainNotAllowed, "caller %q may not chain from %q to %q", truncate(r.req.Caller), src.Name, tgt.Name)
	}
	if !slices.Contains(g.Scopes, AnyScope) {
		for _, s := range r.req.Scopes {
			if !slices.Contains(g.Scopes, s) {
				return nil, &Error{Reason: ReasonScopeNotAllowed, Field: "scope",
					Message: fmt.Sprintf("scope: caller %q may not request %q in %q", truncate(r.req.Caller), truncate(s), tgt.Name)}
			}
		}
	}
	for _, res := range r.req.Resources {
		if !slices.Contains(chain.Resource, res) && !allows(g.Resources, res) {
			return nil, &Error{Reason: ReasonResourceNotAllowed, Field: "resource",
				Message: fmt.Sprintf("resource: caller %q may not request %q from %q", truncate(r.req.Caller), truncate(res), src.Name)}
		}
	}
	if a := r.req.Audience; a != "" && a != chain.Audience && !allows(g.Audiences, a) {
		return nil, &Error{Reason: ReasonAudienceNotAllowed, Field: "audience",
			Message: fmt.Sprintf("audience: caller %q may not request %q from %q", truncate(r.req.Caller), truncate(a), src.Name)}
	}
	if r.req.ActorToken != "" && chain.Transcription.Act && !g.ActorToken {
		return nil, &Error{Reason: ReasonActorTokenNotAllowed, Field: "actor_token",
			Message: fmt.Sprintf("actor_token: the chain from %q to %q names the calling agent itself; caller %q may not send its own", src.Name, tgt.Name, truncate(r.req.Caller))}
	}
	return g, nil
}

// allows reports whether list, a grant's list of values, allows v.
func allows(list []string, v string) bool {
	return slices.Contains(list, AnyScope) || slices.Contains(list, v)
}

// checkSubject applies the grant's conditions on the verified subject token.
func checkSubject(g *ChainGrant, subject *token.Token) error {
	if len(g.SubjectAZP) == 0 {
		return nil
	}
	azp := subject.Claims.AZP
	if azp == "" {
		azp = subject.Claims.ClientID
	}
	if !slices.Contains(g.SubjectAZP, azp) {
		return fail(ReasonSubjectNotAllowed, "the subject token's azp/client_id %q is not one this caller may chain", truncate(azp))
	}
	return nil
}
