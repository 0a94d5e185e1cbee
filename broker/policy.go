package broker

import (
	"context"
	"fmt"
	"slices"
	"strings"

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
	// When, a CEL expression (cel.go), must be true for the grant to apply;
	// "" always applies. A caller may hold several grants of one chain: the
	// first that allows the request and whose When holds applies; when
	// only When conditions stand in the way, the chain is refused with
	// ReasonPolicyDenied.
	When string
}

type compiledPolicy struct {
	callers map[string]*CallerGrant
	// index is each caller's position in Policy.Callers; conds its
	// grants' compiled When conditions, by grant (nil: none).
	index map[string]int
	conds map[string][]*condition
}

func compilePolicy(p Policy, b *Broker) (*compiledPolicy, []error) {
	cp := &compiledPolicy{callers: map[string]*CallerGrant{}, index: map[string]int{}, conds: map[string][]*condition{}}
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
		conds := make([]*condition, len(g.Chains))
		for j, c := range g.Chains {
			chain := b.chains[[2]string{c.Source, c.Target}]
			if chain == nil {
				errs = append(errs, fmt.Errorf("broker: policy for %q, chain %d: no chain %q -> %q is configured", g.Caller, j, c.Source, c.Target))
			}
			if c.When != "" {
				where := fmt.Sprintf("policy[%d].chains[%d].when", i, j)
				src := b.domains[c.Source]
				subject := src != nil && src.VerifySubjectToken || chain != nil && chain.Mode == ModeIssue
				prg, err := compileCondition(c.When, subject)
				if err != nil {
					errs = append(errs, fmt.Errorf("broker: %s: %w", where, err))
				} else {
					conds[j] = &condition{where: where, program: prg}
				}
			}
			if len(c.SubjectAZP) > 0 {
				if src := b.domains[c.Source]; src != nil && !src.VerifySubjectToken {
					errs = append(errs, fmt.Errorf("broker: policy for %q, chain %d: subject conditions need verify_subject_token on domain %q", g.Caller, j, c.Source))
				}
			}
		}
		cp.callers[g.Caller] = &g
		cp.index[g.Caller] = i
		cp.conds[g.Caller] = conds
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

// authorize finds the caller's grants of the chain (deny by default) and
// keeps those that allow the requested scopes, resources, audience and actor
// token; when none does, the first grant's refusal is the answer. Their When
// conditions are evaluated later (applies), once the subject is verified.
func (r *chainRun) authorize(src, tgt *Domain, chain *Chain) ([]int, error) {
	g := r.b.policy.callers[r.req.Caller]
	var (
		allowed []int
		first   error
		found   bool
	)
	if g != nil {
		for j := range g.Chains {
			c := &g.Chains[j]
			if c.Source != src.Name || c.Target != tgt.Name {
				continue
			}
			found = true
			if err := r.allowedBy(c, tgt, src, chain); err != nil {
				if first == nil {
					first = err
				}
				continue
			}
			allowed = append(allowed, j)
		}
	}
	switch {
	case !found:
		return nil, fail(ReasonChainNotAllowed, "caller %q may not chain from %q to %q", truncate(r.req.Caller), src.Name, tgt.Name)
	case len(allowed) == 0:
		return nil, first
	}
	return allowed, nil
}

// allowedBy checks the requested scopes, resources, audience and actor
// token against one grant.
func (r *chainRun) allowedBy(g *ChainGrant, tgt, src *Domain, chain *Chain) error {
	if !slices.Contains(g.Scopes, AnyScope) {
		for _, s := range r.req.Scopes {
			if !slices.Contains(g.Scopes, s) {
				return &Error{Reason: ReasonScopeNotAllowed, Field: "scope",
					Message: fmt.Sprintf("scope: caller %q may not request %q in %q", truncate(r.req.Caller), truncate(s), tgt.Name)}
			}
		}
	}
	for _, res := range r.req.Resources {
		if !slices.Contains(chain.Resource, res) && !allows(g.Resources, res) {
			return &Error{Reason: ReasonResourceNotAllowed, Field: "resource",
				Message: fmt.Sprintf("resource: caller %q may not request %q from %q", truncate(r.req.Caller), truncate(res), src.Name)}
		}
	}
	if a := r.req.Audience; a != "" && a != chain.Audience && !allows(g.Audiences, a) {
		return &Error{Reason: ReasonAudienceNotAllowed, Field: "audience",
			Message: fmt.Sprintf("audience: caller %q may not request %q from %q", truncate(r.req.Caller), truncate(a), src.Name)}
	}
	if r.req.ActorToken != "" && chain.Transcription.Act && !g.ActorToken {
		return &Error{Reason: ReasonActorTokenNotAllowed, Field: "actor_token",
			Message: fmt.Sprintf("actor_token: the chain from %q to %q names the calling agent itself; caller %q may not send its own", src.Name, tgt.Name, truncate(r.req.Caller))}
	}
	return nil
}

// maxDeniedNamed bounds how many false conditions a refusal names.
const maxDeniedNamed = 4

// applies returns the first of the allowed grants (indices from authorize)
// whose When condition holds. A condition that fails to evaluate (a missing
// claim, a claim of another type, the cost limit) is false; it is logged at
// debug by the grant's position only, never with the values it read. When
// none applies the chain is refused with ReasonPolicyDenied, naming the
// grants' positions (policy[i].chains[j].when), never the claims.
func (r *chainRun) applies(ctx context.Context, allowed []int, src, tgt *Domain, chain *Chain) (*ChainGrant, error) {
	g, conds := r.b.policy.callers[r.req.Caller], r.b.policy.conds[r.req.Caller]
	var in *conditionInput
	var denied []string
	for _, j := range allowed {
		c := conds[j]
		if c == nil {
			return &g.Chains[j], nil
		}
		if in == nil {
			in = &conditionInput{req: &r.req, source: src.Name, target: tgt.Name, profile: chain.Mode.String(), now: r.b.now()}
			if r.subject != nil {
				in.subject = &claimsMap{tok: r.subject, raw: r.req.SubjectToken}
			}
		}
		ok, err := c.eval(ctx, in)
		if err != nil && ctx.Err() != nil {
			// The call ended, not the condition: say so rather than deny.
			return nil, &Error{Reason: EndedReason(ctx.Err()), Message: "the call ended while " + c.where + " was evaluated", Err: err}
		}
		if err != nil {
			r.b.log.DebugContext(ctx, "policy condition did not evaluate: counted as false", "request_id", r.req.RequestID, "grant", c.where)
		}
		if ok {
			return &g.Chains[j], nil
		}
		if len(denied) < maxDeniedNamed {
			denied = append(denied, c.where)
		}
	}
	return nil, fail(ReasonPolicyDenied, "caller %q may not chain from %q to %q: %s is false", truncate(r.req.Caller), src.Name, tgt.Name, strings.Join(denied, ", "))
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
