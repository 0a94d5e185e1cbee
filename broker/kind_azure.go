package broker

// The azure target kind: Microsoft Entra client credentials with a
// federated assertion (docs/cloud-azure.md). The grant is the client
// assertion of the Entra application; Entra answers an OAuth token
// response, so the call goes through the token endpoint client like hop 2
// of an oauth target.

import (
	"context"
	"errors"
	"strings"

	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/token"
)

// KindAzure: Microsoft Entra's token endpoint, grant_type
// client_credentials with the grant as client_assertion.
const KindAzure TargetKind = "azure"

// Entra's defaults and bounds.
const (
	// DefaultAzureAudience is the aud Entra expects in a federated
	// assertion unless the federated credential names another.
	DefaultAzureAudience = "api://AzureADTokenExchange"
	// MaxAzureField bounds a federated credential's issuer, subject and
	// audience, and so the grant's iss, sub and aud (600 characters).
	MaxAzureField = 600
	// clientAssertionType is RFC 7523's client assertion type.
	clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// AzureTarget configures a KindAzure domain; Domain.TokenEndpoint is
// https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token (or a
// sovereign cloud's).
type AzureTarget struct {
	// Tenant is the directory (tenant) ID.
	Tenant string
	// ClientID is the application (client) ID whose federated credentials
	// trust the grant's issuer.
	ClientID string
	// Scope is <resource>/.default (client credentials take no other).
	Scope string
	// FederatedCredentials mirror the application's federated identity
	// credentials: the grant's iss, sub and aud must equal one's exactly.
	// Empty: iss and sub are not checked (aud is, against Audience).
	FederatedCredentials []AzureFederatedCredential
	// Audience is the aud Entra expects when FederatedCredentials is
	// empty; default DefaultAzureAudience.
	Audience string
}

// AzureFederatedCredential is one federated identity credential of the
// Entra application.
type AzureFederatedCredential struct {
	Issuer, Subject string
	Audience        string // default DefaultAzureAudience
}

// Reasons of azure targets.
const (
	// ReasonAzureIssuerMismatch: no federated credential has the grant's iss.
	ReasonAzureIssuerMismatch Reason = "AZURE_ISSUER_MISMATCH"
	// ReasonAzureSubjectMismatch: none with the grant's iss has its sub.
	ReasonAzureSubjectMismatch Reason = "AZURE_SUBJECT_MISMATCH"
	// ReasonAzureAudienceInvalid: the grant's aud is not the single value
	// the federated credential (or AzureTarget.Audience) expects.
	ReasonAzureAudienceInvalid Reason = "AZURE_AUDIENCE_INVALID"
	// ReasonAzureClaimTooLong: the grant's iss, sub or aud is longer than
	// Entra's 600 characters.
	ReasonAzureClaimTooLong Reason = "AZURE_CLAIM_TOO_LONG"
	// ReasonAzureRejected: Entra refused the token request (its AADSTS
	// code is in the upstream description).
	ReasonAzureRejected Reason = "AZURE_TOKEN_REJECTED"
)

// HopAzure is the hop name of an azure target's call.
const HopAzure = "azure_token"

// grantAzure is the audit event's grant_type of the azure hop.
const grantAzure = "azure:client_credentials"

// EntraTokenEndpoint is the Entra token endpoint of tenant in Azure's
// global cloud, the default endpoint of an azure target.
func EntraTokenEndpoint(tenant string) string {
	return "https://login.microsoftonline.com/" + tenant + "/oauth2/v2.0/token"
}

func (a *AzureTarget) setup() []error {
	var errs []error
	if a.Tenant == "" || a.ClientID == "" {
		errs = append(errs, errors.New("azure.tenant and azure.client_id are required"))
	}
	if !strings.HasSuffix(a.Scope, "/.default") || strings.ContainsAny(a.Scope, " \t") {
		errs = append(errs, errors.New("azure.scope must be one <resource>/.default (client credentials take no other)"))
	}
	if a.Audience == "" {
		a.Audience = DefaultAzureAudience
	}
	a.FederatedCredentials = append([]AzureFederatedCredential(nil), a.FederatedCredentials...)
	for i := range a.FederatedCredentials {
		c := &a.FederatedCredentials[i]
		if c.Audience == "" {
			c.Audience = DefaultAzureAudience
		}
		if c.Issuer == "" || c.Subject == "" || len(c.Issuer) > MaxAzureField || len(c.Subject) > MaxAzureField || len(c.Audience) > MaxAzureField {
			errs = append(errs, errors.New("azure.federated_credentials: issuer and subject are required, each field at most 600 characters"))
		}
	}
	return errs
}

// azureChecks are Entra's checks of a federated assertion: lengths within
// 600 characters, a federated credential for iss, one for iss and sub,
// and its single aud.
func azureChecks(tok *token.Token, _, tgt *Domain) *Error {
	c, a := &tok.Claims, tgt.Azure
	bad := func(r Reason, msg string) *Error { return &Error{Reason: r, Hop: HopTokenExchange, Message: msg} }
	for _, v := range append([]string{c.Issuer, c.Subject}, c.Audience...) {
		if len(v) > MaxAzureField {
			return bad(ReasonAzureClaimTooLong, "the grant's iss, sub or aud is longer than Entra's 600 characters")
		}
	}
	want := a.Audience
	if len(a.FederatedCredentials) > 0 {
		var byIssuer []AzureFederatedCredential
		for _, f := range a.FederatedCredentials {
			if f.Issuer == c.Issuer {
				byIssuer = append(byIssuer, f)
			}
		}
		if len(byIssuer) == 0 {
			return bad(ReasonAzureIssuerMismatch, "no federated credential of "+tgt.Name+" has the issuer "+quote(c.Issuer))
		}
		var match *AzureFederatedCredential
		for i := range byIssuer {
			if byIssuer[i].Subject == c.Subject {
				match = &byIssuer[i]
				break
			}
		}
		if match == nil {
			return bad(ReasonAzureSubjectMismatch, "no federated credential of "+tgt.Name+" has the issuer "+quote(c.Issuer)+" and the subject "+quote(c.Subject))
		}
		want = match.Audience
	}
	if len(c.Audience) != 1 || c.Audience[0] != want {
		return bad(ReasonAzureAudienceInvalid, "the grant's aud must be the single value "+quote(want)+" for "+tgt.Name)
	}
	if c.Subject == "" {
		return bad(ReasonAzureSubjectMismatch, "the grant has no sub")
	}
	return nil
}

// entraToken performs hop 2 of an azure target.
func (r *chainRun) entraToken(ctx context.Context, tgt *Domain, grant string) (*Result, error) {
	a := tgt.Azure
	form := map[string][]string{
		"grant_type":            {"client_credentials"},
		"scope":                 {a.Scope},
		"client_assertion_type": {clientAssertionType},
		"client_assertion":      {grant},
	}
	d := *tgt // client_id through "none" client authentication
	d.Creds = oauth.ClientCredentials{ClientID: a.ClientID, Method: oauth.AuthNone}
	resp, err := r.call(ctx, &d, HopAzure, grantAzure, form, nil)
	if n := len(r.ev.Hops); n > 0 && r.ev.Hops[n-1].GrantType == grantAzure {
		r.ev.Hops[n-1].AssertionJTIHash = r.ev.AssertionJTIHash
	}
	if e, ok := AsError(err); ok && e.Upstream != nil && e.Reason == ReasonTokenExchangeRejected {
		e.Reason = ReasonAzureRejected
		e.Message = tgt.Name + " (Entra) refused the token request: " + upstreamSummary(e.Upstream)
	}
	if err != nil {
		return nil, err
	}
	issued := resp.IssuedTokenType
	if issued == "" {
		issued = oauth.TokenTypeAccessToken
	}
	return &Result{AccessToken: resp.AccessToken, IssuedTokenType: issued, TokenType: resp.TokenType, ExpiresIn: resp.ExpiresIn, Scope: resp.Scope}, nil
}
