package broker_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/broker"
	"github.com/chainbroker/chainbroker/broker/brokertest"
	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/store"
	"github.com/chainbroker/chainbroker/store/memory"
	"github.com/chainbroker/chainbroker/token"
)

// Cases of TestChainTable for the ID-JAG profile and DPoP (chainCases
// appends them): one per check, each on the kit's A -> B chain made an
// id_jag chain (idJAG) whose source answers ID-JAGs (jagGrants).

// idJAG makes the kit's token exchange chain an id_jag chain.
func idJAG(c *broker.Config) { c.Chains[0].Profile = broker.ProfileIDJAG }

// jagGrants makes hop 1 answer ID-JAGs, adjusted by mutate.
func jagGrants(mutate func(c map[string]any, o *token.SignOptions)) func(*testing.T, *kit) {
	return func(_ *testing.T, k *kit) {
		k.grants.IssuedTokenType = oauth.TokenTypeIDJAG
		k.grants.Mutate = func(c map[string]any, o *token.SignOptions) {
			o.Typ, c["client_id"] = token.TypeIDJAG, "chainbroker"
			delete(c, "azp")
			if mutate != nil {
				mutate(c, o)
			}
		}
	}
}

// callerKey is the key the caller proves possession of.
func callerKey(t testing.TB) *token.Signer { return brokertest.Key(t, "caller", "ES256") }

// proofFor is a DPoP proof of key for POST endpoint, made now on the kit's clock.
func proofFor(t testing.TB, k *kit, key *token.Signer, endpoint string, opts token.DPoPOptions) string {
	t.Helper()
	if opts.IssuedAt.IsZero() {
		opts.IssuedAt = k.clock.Now()
	}
	p, err := key.DPoPProof(http.MethodPost, endpoint, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func thumb(t testing.TB, key *token.Signer) string {
	t.Helper()
	tp, err := key.Thumbprint()
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

// withProof adds a DPoP proof of the caller's key for B's token endpoint.
func withProof(t *testing.T, k *kit, r *broker.Request) {
	r.DPoPProof = proofFor(t, k, callerKey(t), issuerB+"/token", token.DPoPOptions{})
}

// boundTarget answers hop 2 as a DPoP-supporting target: a JWT access token
// bound (cnf.jkt) to the proof's key, token_type DPoP; jkt, when not "",
// is written instead of the proof's thumbprint, and tokenType instead of
// DPoP.
func boundTarget(t *testing.T, k *kit, jkt, tokenType string) brokertest.Handler {
	return func(_ context.Context, _ int, req oauth.Request) (*oauth.TokenResponse, error) {
		claims := map[string]any{"iss": issuerB, "sub": "b-alice", "exp": k.clock.Now().Add(5 * time.Minute).Unix()}
		if p := req.Header.Get("DPoP"); p != "" {
			proof, err := token.VerifyDPoP(p, token.DPoPCheck{Method: http.MethodPost, URL: issuerB + "/token", Now: k.clock.Now()})
			if err != nil {
				return nil, &oauth.Error{StatusCode: 400, Code: "invalid_dpop_proof", Description: err.Error()}
			}
			claims["cnf"] = map[string]string{"jkt": proof.Thumbprint}
		}
		if jkt != "" {
			claims["cnf"] = map[string]string{"jkt": jkt}
		}
		at, err := brokertest.Key(t, "domain-b", "ES256").Sign(claims, token.SignOptions{})
		if err != nil {
			return nil, err
		}
		if tokenType == "" {
			tokenType = "DPoP"
		}
		return &oauth.TokenResponse{AccessToken: at, TokenType: tokenType, ExpiresIn: 300}, nil
	}
}

// hopRequest is the only request of a grant type.
func hopRequest(t *testing.T, k *kit, grantType string) oauth.Request {
	t.Helper()
	reqs := k.ep.Requests(grantType)
	if len(reqs) != 1 {
		t.Fatalf("%d %s requests", len(reqs), grantType)
	}
	return reqs[0]
}

func idJAGCases() []chainCase {
	scopes := func(s ...string) func(*testing.T, *kit, *broker.Request) {
		return func(_ *testing.T, _ *kit, r *broker.Request) { r.Scopes = s }
	}
	return []chainCase{
		{name: "id_jag: success", config: idJAG, setup: jagGrants(nil), req: scopes("read"), want: "",
			check: both(calls(1, 1), lastEvent(store.OutcomeSuccess), func(t *testing.T, k *kit, res *broker.Result, _ error) {
				f := hopRequest(t, k, oauth.GrantTypeTokenExchange).Form
				if f.Get("requested_token_type") != oauth.TokenTypeIDJAG || f.Get("subject_token_type") != oauth.TokenTypeIDToken ||
					f.Get("audience") != issuerB || f.Get("scope") != "read" {
					t.Errorf("hop 1 form %v", f)
				}
				if res.Profile != broker.ProfileIDJAG || k.st.Events(t)[0].Profile != "id_jag" {
					t.Errorf("profile %q, event %q", res.Profile, k.st.Events(t)[0].Profile)
				}
				if h := hopRequest(t, k, oauth.GrantTypeJWTBearer); h.Creds.Method != oauth.AuthClientSecretBasic || h.Header.Get("DPoP") != "" {
					t.Errorf("hop 2 request %+v", h)
				}
			})},
		{name: "id_jag: the caller's subject token type is sent as is", config: idJAG, setup: jagGrants(nil),
			req: func(_ *testing.T, _ *kit, r *broker.Request) { r.SubjectTokenType = oauth.TokenTypeAccessToken }, want: "",
			check: func(t *testing.T, k *kit, _ *broker.Result, _ error) {
				if f := hopRequest(t, k, oauth.GrantTypeTokenExchange).Form; f.Get("subject_token_type") != oauth.TokenTypeAccessToken {
					t.Errorf("hop 1 form %v", f)
				}
			}},
		{name: "id_jag: issued_token_type is not id-jag", config: idJAG, setup: func(t *testing.T, k *kit) {
			jagGrants(nil)(t, k)
			k.grants.IssuedTokenType = oauth.TokenTypeAccessToken
		}, want: broker.ReasonAssertionIssuedTokenType, check: calls(1, 0)},
		{name: "id_jag: typ JWT", config: idJAG, setup: jagGrants(func(_ map[string]any, o *token.SignOptions) { o.Typ = token.TypeJWT }),
			want: broker.ReasonAssertionTypeInvalid, check: calls(1, 0)},
		{name: "id_jag: typ in another case", config: idJAG,
			setup: jagGrants(func(_ map[string]any, o *token.SignOptions) { o.Typ = strings.ToUpper(token.TypeIDJAG) }),
			want:  broker.ReasonAssertionTypeInvalid},
		{name: "id_jag: two audiences", config: idJAG,
			setup: jagGrants(func(c map[string]any, _ *token.SignOptions) { c["aud"] = []string{issuerB, "account"} }),
			want:  broker.ReasonAssertionAudienceMultiple},
		{name: "id_jag: aud is the token endpoint, not the issuer", config: func(c *broker.Config) {
			idJAG(c)
			c.Domains[1].Assertion.Audience = []string{issuerB, issuerB + "/token"} // accepted for JWT grants
		}, setup: jagGrants(func(c map[string]any, _ *token.SignOptions) { c["aud"] = issuerB + "/token" }),
			want: broker.ReasonAssertionAudienceInvalid},
		{name: "id_jag: client_id of another client", config: idJAG,
			setup: jagGrants(func(c map[string]any, _ *token.SignOptions) { c["client_id"] = "someone-else" }),
			want:  broker.ReasonAssertionClientIDMismatch},
		{name: "id_jag: no client_id", config: idJAG,
			setup: jagGrants(func(c map[string]any, _ *token.SignOptions) { c["client_id"] = nil }),
			want:  broker.ReasonAssertionClientIDMismatch},
		{name: "id_jag: no iss", config: idJAG,
			setup: jagGrants(func(c map[string]any, _ *token.SignOptions) { c["iss"] = nil }), want: broker.ReasonAssertionIssuerUntrusted},
		{name: "id_jag: no sub", config: idJAG,
			setup: jagGrants(func(c map[string]any, _ *token.SignOptions) { c["sub"] = nil }), want: broker.ReasonAssertionSubjectMissing},
		{name: "id_jag: no jti, even where reuse is allowed", config: func(c *broker.Config) {
			idJAG(c)
			c.Domains[1].Assertion.AllowReuse = true
		}, setup: jagGrants(func(c map[string]any, _ *token.SignOptions) { c["jti"] = nil }), want: broker.ReasonAssertionJTIMissing},
		{name: "id_jag: no exp", config: idJAG,
			setup: jagGrants(func(c map[string]any, _ *token.SignOptions) { c["exp"] = nil }), want: broker.ReasonAssertionExpirationMissing},
		{name: "id_jag: no iat", config: idJAG,
			setup: jagGrants(func(c map[string]any, _ *token.SignOptions) { c["iat"] = nil }), want: broker.ReasonAssertionIssuedAtMissing},
		{name: "id_jag: lifetime above the target's maximum", config: idJAG, setup: func(t *testing.T, k *kit) {
			jagGrants(nil)(t, k)
			k.grants.Lifetime = time.Hour
		}, want: broker.ReasonAssertionLifetimeTooLong},
		{name: "id_jag: signed by another key", config: idJAG, setup: func(t *testing.T, k *kit) {
			jagGrants(func(_ map[string]any, o *token.SignOptions) { o.Kid = k.signA.KeyID() })(t, k)
			k.grants.Signer = brokertest.Key(t, "stranger", "ES256")
		}, want: broker.ReasonAssertionSignatureInvalid},
		{name: "id_jag: scope wider than asked", config: idJAG,
			setup: jagGrants(func(c map[string]any, _ *token.SignOptions) { c["scope"] = "read admin" }), req: scopes("read"),
			want: broker.ReasonAssertionScopeWider, check: calls(1, 0)},
		{name: "id_jag: scope narrower than asked", config: idJAG,
			setup: jagGrants(func(c map[string]any, _ *token.SignOptions) { c["scope"] = "read" }), req: scopes("read", "write"), want: ""},
		{name: "id_jag: resource not asked for", config: idJAG,
			setup: jagGrants(func(c map[string]any, _ *token.SignOptions) { c["resource"] = "https://api.example/admin" }),
			want:  broker.ReasonAssertionResourceWider},
		{name: "id_jag: resource as asked", config: func(c *broker.Config) {
			idJAG(c)
			c.Chains[0].Resource = []string{"https://api.example/mcp"}
		}, setup: jagGrants(func(c map[string]any, _ *token.SignOptions) { c["resource"] = []string{"https://api.example/mcp"} }), want: "",
			check: func(t *testing.T, k *kit, _ *broker.Result, _ error) {
				if f := hopRequest(t, k, oauth.GrantTypeTokenExchange).Form; f.Get("resource") != "https://api.example/mcp" {
					t.Errorf("hop 1 form %v", f)
				}
			}},
		{name: "id_jag: resource malformed", config: idJAG,
			setup: jagGrants(func(c map[string]any, _ *token.SignOptions) { c["resource"] = 7 }), want: broker.ReasonAssertionMalformed},
		{name: "id_jag: replayed", config: idJAG, setup: func(t *testing.T, k *kit) {
			jagGrants(func(c map[string]any, _ *token.SignOptions) { c["jti"] = "the-same" })(t, k)
			if _, err := k.chain(context.Background(), k.request(t)); err != nil {
				t.Fatal(err)
			}
		}, want: broker.ReasonAssertionReplayed, check: calls(2, 1)},
		{name: "id_jag: the source's keys are not checked where the target says so", config: func(c *broker.Config) {
			idJAG(c)
			c.Domains[1].Assertion.SkipSignature = true
			c.Domains[0].Creds = oauth.ClientCredentials{ClientID: "chainbroker", Method: oauth.AuthClientSecretBasic, Secret: "a"}
		}, setup: func(t *testing.T, k *kit) {
			jagGrants(nil)(t, k)
			k.grants.Signer = brokertest.Key(t, "unpublished", "ES256")
		}, want: "", check: func(t *testing.T, k *kit, _ *broker.Result, _ error) {
			if ev := k.st.Events(t)[0]; ev.SubjectVerified || ev.UnverifiedSubject != "alice" {
				t.Errorf("event subject %q (verified %v), unverified %q", ev.Subject, ev.SubjectVerified, ev.UnverifiedSubject)
			}
		}},
		{name: "id_jag: claims still checked without the signature", config: func(c *broker.Config) {
			idJAG(c)
			c.Domains[1].Assertion.SkipSignature = true
			c.Domains[0].Creds = oauth.ClientCredentials{ClientID: "chainbroker", Method: oauth.AuthClientSecretBasic, Secret: "a"}
		}, setup: jagGrants(func(c map[string]any, _ *token.SignOptions) { c["client_id"] = "someone-else" }),
			want: broker.ReasonAssertionClientIDMismatch},
		{name: "id_jag: issue mode", config: func(c *broker.Config) { c.Chains[1].Profile = broker.ProfileIDJAG },
			req: func(t *testing.T, k *kit, r *broker.Request) {
				*r = k.issueRequest(t)
				r.Scopes = []string{"read"}
			}, want: "", check: both(calls(0, 1), func(t *testing.T, k *kit, res *broker.Result, _ error) {
				g, err := token.ParseUnverified(assertions(k)[0])
				if err != nil {
					t.Fatal(err)
				}
				c := g.Claims
				if g.Header.Typ != token.TypeIDJAG || c.Issuer != brokerIssuer || c.Subject != "alice" || len(c.Audience) != 1 ||
					c.Audience[0] != issuerB || c.ClientID != "chainbroker" || c.Scope != "read" || c.JTI == "" || c.IssuedAt.IsZero() {
					t.Errorf("issued ID-JAG %+v %+v", g.Header, c)
				}
				if act, _ := g.Claim("act"); string(act) != `{"sub":"agent"}` {
					t.Errorf("act %s", act)
				}
				if res.Profile != broker.ProfileIDJAG {
					t.Errorf("profile %q", res.Profile)
				}
			})},
		{name: "id_jag: issue mode binds the grant to the caller's key", config: func(c *broker.Config) {
			c.Chains[1].Profile = broker.ProfileIDJAG
			c.Chains[1].Resource = []string{"https://api.example/mcp"}
		}, setup: func(t *testing.T, k *kit) { k.ep.JWTBearer = boundTarget(t, k, "", "") },
			req: func(t *testing.T, k *kit, r *broker.Request) {
				*r = k.issueRequest(t)
				withProof(t, k, r)
			}, want: "", check: func(t *testing.T, k *kit, _ *broker.Result, _ error) {
				g, _ := token.ParseUnverified(assertions(k)[0])
				cnf, _ := g.Claim("cnf")
				res, _ := g.StringClaim("resource")
				if string(cnf) != `{"jkt":"`+thumb(t, callerKey(t))+`"}` || res != "https://api.example/mcp" {
					t.Errorf("cnf %s, resource %q", cnf, res)
				}
			}},

		// DPoP, on the plain (jwt_grant) chain: nothing profile-specific.
		{name: "dpop: a bound token", setup: func(t *testing.T, k *kit) { k.ep.JWTBearer = boundTarget(t, k, "", "") }, req: func(t *testing.T, k *kit, r *broker.Request) {
			withProof(t, k, r)
		}, want: "", check: both(calls(1, 1), func(t *testing.T, k *kit, res *broker.Result, _ error) {
			if res.TokenType != "DPoP" {
				t.Errorf("token_type %q", res.TokenType)
			}
			if h := hopRequest(t, k, oauth.GrantTypeJWTBearer).Header.Get("DPoP"); h != k.last.DPoPProof {
				t.Error("hop 2 did not carry the caller's proof")
			}
			if h := hopRequest(t, k, oauth.GrantTypeTokenExchange).Header.Get("DPoP"); h != "" {
				t.Error("hop 1 carried a proof")
			}
			if ev := k.st.Events(t)[0]; ev.DPoPJKT != thumb(t, callerKey(t)) {
				t.Errorf("event dpop_jkt %q", ev.DPoPJKT)
			}
		})},
		{name: "dpop: an opaque DPoP token", setup: func(_ *testing.T, k *kit) {
			k.ep.JWTBearer = brokertest.Answer(oauth.TokenResponse{AccessToken: "opaque", TokenType: "dpop", ExpiresIn: 300})
		}, req: func(t *testing.T, k *kit, r *broker.Request) { withProof(t, k, r) }, want: ""},
		{name: "dpop: proof for another endpoint", req: func(t *testing.T, k *kit, r *broker.Request) {
			r.DPoPProof = proofFor(t, k, callerKey(t), issuerA+"/token", token.DPoPOptions{})
		}, want: broker.ReasonDPoPProofInvalid, check: both(calls(0, 0), lastEvent(store.OutcomeFailure), field("dpop_proof"))},
		{name: "dpop: stale proof", req: func(t *testing.T, k *kit, r *broker.Request) {
			r.DPoPProof = proofFor(t, k, callerKey(t), issuerB+"/token", token.DPoPOptions{IssuedAt: k.clock.Now().Add(-time.Minute)})
		}, want: broker.ReasonDPoPProofInvalid, check: calls(0, 0)},
		{name: "dpop: not a proof", req: func(_ *testing.T, _ *kit, r *broker.Request) { r.DPoPProof = "garbage" },
			want: broker.ReasonDPoPProofInvalid},
		{name: "dpop: proof too large", req: func(_ *testing.T, _ *kit, r *broker.Request) {
			r.DPoPProof = strings.Repeat("a", token.MaxDPoPProofBytes+1)
		}, want: broker.ReasonRequestInvalid},
		{name: "dpop: proof replayed", setup: func(t *testing.T, k *kit) {
			k.ep.JWTBearer = boundTarget(t, k, "", "")
			first := k.request(t)
			withProof(t, k, &first)
			if _, err := k.chain(context.Background(), first); err != nil {
				t.Fatal(err)
			}
		}, req: func(_ *testing.T, k *kit, r *broker.Request) { r.DPoPProof = k.last.DPoPProof },
			want: broker.ReasonDPoPProofReplayed, check: calls(1, 1)},
		{name: "dpop: replay store unavailable", setup: func(_ *testing.T, k *kit) { k.st.Fail(brokertest.OpMark, nil) },
			req: func(t *testing.T, k *kit, r *broker.Request) { withProof(t, k, r) }, want: broker.ReasonStoreUnavailable, check: calls(0, 0)},
		{name: "dpop: the target ignores the proof", req: func(t *testing.T, k *kit, r *broker.Request) { withProof(t, k, r) },
			want: broker.ReasonDPoPBindingMissing, check: both(calls(1, 1), lastEvent(store.OutcomeFailure))},
		{name: "dpop: token_type DPoP, token unbound", setup: func(t *testing.T, k *kit) {
			k.ep.JWTBearer = func(_ context.Context, _ int, _ oauth.Request) (*oauth.TokenResponse, error) {
				at, _ := brokertest.Key(t, "domain-b", "ES256").Sign(map[string]any{"iss": issuerB, "sub": "b"}, token.SignOptions{})
				return &oauth.TokenResponse{AccessToken: at, TokenType: "DPoP", ExpiresIn: 300}, nil
			}
		}, req: func(t *testing.T, k *kit, r *broker.Request) { withProof(t, k, r) }, want: broker.ReasonDPoPBindingMissing},
		{name: "dpop: token bound to another key", setup: func(t *testing.T, k *kit) {
			k.ep.JWTBearer = boundTarget(t, k, thumb(t, brokertest.Key(t, "stranger", "ES256")), "")
		}, req: func(t *testing.T, k *kit, r *broker.Request) { withProof(t, k, r) }, want: broker.ReasonDPoPBindingMissing},
		{name: "dpop: the target wants a nonce", setup: func(_ *testing.T, k *kit) {
			k.ep.JWTBearer = brokertest.Fail(&oauth.Error{StatusCode: 400, Code: oauth.ErrorUseDPoPNonce,
				Description: "Authorization server requires nonce in DPoP proof", DPoPNonce: "n-42"})
		}, req: func(t *testing.T, k *kit, r *broker.Request) { withProof(t, k, r) }, want: broker.ReasonDPoPNonceRequired,
			check: both(calls(1, 1), func(t *testing.T, _ *kit, _ *broker.Result, err error) {
				if e, _ := broker.AsError(err); e.DPoPNonce != "n-42" || e.Hop != broker.HopJWTBearer || !strings.Contains(e.Message, "n-42") {
					t.Errorf("error %+v", e)
				}
			})},
		{name: "dpop: hop 2 lost after sending: not retried with the same proof", config: maxAttempts(3), setup: func(t *testing.T, k *kit) {
			k.ep.JWTBearer = brokertest.Sequence(brokertest.Unavailable(false), boundTarget(t, k, "", ""))
		}, req: func(t *testing.T, k *kit, r *broker.Request) { withProof(t, k, r) }, want: broker.ReasonUpstreamUnavailable, check: calls(1, 1)},
		{name: "dpop: hop 2 not sent: retried with the same proof", config: maxAttempts(3), setup: func(t *testing.T, k *kit) {
			k.ep.JWTBearer = brokertest.Sequence(brokertest.Unavailable(true), boundTarget(t, k, "", ""))
		}, req: func(t *testing.T, k *kit, r *broker.Request) { withProof(t, k, r) }, want: "", check: calls(1, 2)},
		{name: "dpop: source proof binds the grant", config: idJAG, setup: func(t *testing.T, k *kit) {
			k.ep.JWTBearer = boundTarget(t, k, "", "")
			jagGrants(func(c map[string]any, _ *token.SignOptions) {
				c["cnf"] = map[string]string{"jkt": thumb(t, callerKey(t))}
			})(t, k)
		}, req: func(t *testing.T, k *kit, r *broker.Request) {
			withProof(t, k, r)
			r.SourceDPoPProof = proofFor(t, k, callerKey(t), issuerA+"/token", token.DPoPOptions{})
		}, want: "", check: func(t *testing.T, k *kit, _ *broker.Result, _ error) {
			if h := hopRequest(t, k, oauth.GrantTypeTokenExchange).Header.Get("DPoP"); h != k.last.SourceDPoPProof {
				t.Error("hop 1 did not carry the source proof")
			}
		}},
		{name: "dpop: the source ignores the source proof", config: idJAG, setup: func(t *testing.T, k *kit) {
			k.ep.JWTBearer = boundTarget(t, k, "", "")
			jagGrants(nil)(t, k)
		}, req: func(t *testing.T, k *kit, r *broker.Request) {
			withProof(t, k, r)
			r.SourceDPoPProof = proofFor(t, k, callerKey(t), issuerA+"/token", token.DPoPOptions{})
		}, want: broker.ReasonAssertionCnfMismatch, check: calls(1, 0)},
		{name: "dpop: grant bound to another key", config: idJAG, setup: jagGrants(func(c map[string]any, _ *token.SignOptions) {
			c["cnf"] = map[string]string{"jkt": "another"}
		}), req: func(t *testing.T, k *kit, r *broker.Request) { withProof(t, k, r) }, want: broker.ReasonAssertionCnfMismatch},
		{name: "dpop: bound grant, no proof", config: idJAG, setup: jagGrants(func(c map[string]any, _ *token.SignOptions) {
			c["cnf"] = map[string]string{"jkt": "some-key"}
		}), want: broker.ReasonAssertionCnfMismatch},
		{name: "dpop: source proof of another key", req: func(t *testing.T, k *kit, r *broker.Request) {
			withProof(t, k, r)
			r.SourceDPoPProof = proofFor(t, k, brokertest.Key(t, "stranger", "ES256"), issuerA+"/token", token.DPoPOptions{})
		}, want: broker.ReasonDPoPProofInvalid, check: both(calls(0, 0), field("source_dpop_proof"))},
		{name: "dpop: source proof without a proof", req: func(t *testing.T, k *kit, r *broker.Request) {
			r.SourceDPoPProof = proofFor(t, k, callerKey(t), issuerA+"/token", token.DPoPOptions{})
		}, want: broker.ReasonRequestInvalid},
		{name: "dpop: a cached token only for its key", config: func(c *broker.Config) { c.Domains[1].Cache.Enabled = true },
			setup: func(t *testing.T, k *kit) {
				k.ep.JWTBearer = boundTarget(t, k, "", "")
				first := k.request(t)
				withProof(t, k, &first)
				for _, key := range []*token.Signer{callerKey(t), brokertest.Key(t, "caller-2", "ES256")} {
					first.DPoPProof = proofFor(t, k, key, issuerB+"/token", token.DPoPOptions{})
					if _, err := k.chain(context.Background(), first); err != nil {
						t.Fatal(err)
					}
				}
			}, req: func(t *testing.T, k *kit, r *broker.Request) {
				*r = k.last
				withProof(t, k, r)
			}, want: "", check: both(calls(2, 2), lastEvent(store.OutcomeCacheHit))},
	}
}

// field checks the error's field.
func field(name string) func(*testing.T, *kit, *broker.Result, error) {
	return func(t *testing.T, _ *kit, _ *broker.Result, err error) {
		t.Helper()
		if e, _ := broker.AsError(err); e == nil || e.Field != name {
			t.Errorf("error %+v, want field %s", e, name)
		}
	}
}

// New refuses an id_jag chain whose target client is public, and a target
// skipping signatures fed by a public client at the source.
func TestNewIDJAGNeedsConfidentialClients(t *testing.T) {
	signA, _ := fixtureKeys(t)
	st := memory.New(memory.Options{})
	t.Cleanup(func() { st.Close() })
	conf := oauth.ClientCredentials{ClientID: "chainbroker", Method: oauth.AuthClientSecretBasic, Secret: "s"}
	public := oauth.ClientCredentials{ClientID: "chainbroker", Method: oauth.AuthNone}
	for _, tc := range []struct {
		name            string
		srcCreds, creds oauth.ClientCredentials
		profile         broker.Profile
		skip            bool
		want            string
	}{
		{"id_jag, confidential", conf, conf, broker.ProfileIDJAG, false, ""},
		{"id_jag, public target client", conf, public, broker.ProfileIDJAG, false, "must be confidential"},
		{"jwt_grant, public target client", conf, public, broker.ProfileJWTGrant, false, ""},
		{"skip signature, confidential source client", conf, conf, broker.ProfileIDJAG, true, ""},
		{"skip signature, public source client", public, conf, broker.ProfileIDJAG, true, "skips grant signatures"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := broker.New(broker.Config{
				Domains: []broker.Domain{
					{Name: "domain-a", Issuer: issuerA, TokenEndpoint: issuerA + "/token", Keys: brokertest.Verifier(t, signA), Creds: tc.srcCreds},
					{Name: "domain-b", Issuer: issuerB, TokenEndpoint: issuerB + "/token", Creds: tc.creds,
						Assertion: broker.AssertionPolicy{SkipSignature: tc.skip}},
				},
				Chains:   []broker.Chain{{Source: "domain-a", Target: "domain-b", Profile: tc.profile}},
				Endpoint: &scriptedEndpoint{}, Replay: st, Audit: st,
			})
			if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("New: %v, want %q", err, tc.want)
			}
		})
	}
}

// The use_dpop_nonce answer keeps the nonce, bounded.
func TestDPoPNonceBounded(t *testing.T) {
	k := newKit(t, nil)
	k.ep.JWTBearer = brokertest.Fail(&oauth.Error{StatusCode: 400, Code: oauth.ErrorUseDPoPNonce,
		DPoPNonce: strings.Repeat("n", oauth.MaxDPoPNonceBytes+1)})
	req := k.request(t)
	withProof(t, k, &req)
	_, err := k.chain(context.Background(), req)
	var e *broker.Error
	if !errors.As(err, &e) || e.Reason != broker.ReasonDPoPNonceRequired || e.DPoPNonce != "" {
		t.Fatalf("err %+v", e)
	}
}
