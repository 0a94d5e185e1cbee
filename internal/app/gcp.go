package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/chainbroker/chainbroker/broker"
	"github.com/chainbroker/chainbroker/config"
)

// googleClient calls Google STS and IAM Credentials for gcp targets
// (broker.GCPClient): form-encoded token exchange (as Google's client
// libraries send it), JSON generateAccessToken with the federated token as
// bearer. Bodies are bounded, redirects not followed.
type googleClient struct{ http *http.Client }

// maxGoogleBody bounds a Google answer.
const maxGoogleBody = 64 << 10

func (g *googleClient) ExchangeToken(ctx context.Context, endpoint string, req broker.GCPExchange) (string, int64, error) {
	form := url.Values{
		"grant_type":           {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"audience":             {req.Audience},
		"scope":                {req.Scope},
		"requested_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		"subject_token":        {req.SubjectToken},
		"subject_token_type":   {req.SubjectTokenType},
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, err
	}
	hreq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	var out struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := g.do(hreq, &out, stsError); err != nil {
		return "", 0, err
	}
	if out.AccessToken == "" {
		return "", 0, &broker.GCPError{StatusCode: http.StatusOK, Message: "no access_token in Google STS's answer"}
	}
	return out.AccessToken, out.ExpiresIn, nil
}

func (g *googleClient) GenerateAccessToken(ctx context.Context, endpoint, sa, federated string, scopes []string, lifetime time.Duration) (string, time.Time, error) {
	body, err := json.Marshal(map[string]any{"scope": scopes, "lifetime": strconv.FormatInt(int64(lifetime/time.Second), 10) + "s"})
	if err != nil {
		return "", time.Time{}, err
	}
	u := strings.TrimSuffix(endpoint, "/") + "/v1/projects/-/serviceAccounts/" + url.PathEscape(sa) + ":generateAccessToken"
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return "", time.Time{}, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Authorization", "Bearer "+federated)
	var out struct {
		AccessToken string    `json:"accessToken"`
		ExpireTime  time.Time `json:"expireTime"`
	}
	if err := g.do(hreq, &out, apiError); err != nil {
		return "", time.Time{}, err
	}
	if out.AccessToken == "" || out.ExpireTime.IsZero() {
		return "", time.Time{}, &broker.GCPError{StatusCode: http.StatusOK, Message: "no accessToken or expireTime in IAM Credentials' answer"}
	}
	return out.AccessToken, out.ExpireTime, nil
}

// do sends req and decodes a 200 JSON answer into out; any other answer
// is a *broker.GCPError read by errorOf (an empty Code when the body says
// nothing), failures on the wire are returned as they are (outages).
func (g *googleClient) do(req *http.Request, out any, errorOf func([]byte) (string, string)) error {
	resp, err := g.http.Do(req)
	if err != nil {
		return fmt.Errorf("google: %s: %w", req.URL.Host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxGoogleBody+1))
	if err != nil {
		return fmt.Errorf("google: %s: reading the answer: %w", req.URL.Host, err)
	}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != http.StatusOK {
		ge := &broker.GCPError{StatusCode: resp.StatusCode}
		if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && ra > 0 && ra <= 3600 {
			ge.RetryAfter = time.Duration(ra) * time.Second
		}
		if len(body) <= maxGoogleBody && ct == "application/json" {
			ge.Code, ge.Message = errorOf(body)
		}
		if ge.Code == "" && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
			ge.StatusCode = 0 // not an error answer Google would give: invalid
		}
		return ge
	}
	if len(body) > maxGoogleBody || ct != "application/json" || json.Unmarshal(body, out) != nil {
		return &broker.GCPError{Message: "not a JSON answer of at most 64 KiB"}
	}
	return nil
}

// stsError reads Google STS's OAuth error.
func stsError(body []byte) (string, string) {
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	_ = json.Unmarshal(body, &e)
	return e.Error, e.Description
}

// apiError reads a Google API error ({"error": {"code", "message", "status"}}).
func apiError(body []byte) (string, string) {
	var e struct {
		Error struct {
			Message string `json:"message"`
			Status  string `json:"status"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return e.Error.Status, e.Error.Message
}

// gcpTarget is a kind gcp domain's settings with its Google client (nil
// for other kinds), over the domain's HTTP client (its CA file), traced,
// following no redirect.
func gcpTarget(d config.Domain, base *http.Client, wrap func(http.RoundTripper) http.RoundTripper) *broker.GCPTarget {
	if d.Kind != string(broker.KindGCP) {
		return nil
	}
	hc := cloudClient(base, wrap)
	g := d.GCP
	return &broker.GCPTarget{
		Audience: g.Audience, AllowedAudiences: g.AllowedAudiences, ServiceAccount: g.ServiceAccount,
		IAMCredentialsEndpoint: g.IAMCredentialsEndpoint, Lifetime: g.Lifetime.D(), ExtendedLifetime: g.ExtendedLifetime,
		Scopes: g.Scopes, Client: &googleClient{http: hc},
	}
}
