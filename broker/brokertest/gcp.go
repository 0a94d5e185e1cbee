package brokertest

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"
)

// GCPExchange is a scripted Google STS answer to the nth exchange.
type GCPExchange func(ctx context.Context, n int, endpoint, audience, subjectToken string) (string, int64, error)

// GCPImpersonate is a scripted IAM Credentials answer to the nth call.
type GCPImpersonate func(ctx context.Context, n int, serviceAccount, federatedToken string, lifetime time.Duration) (string, time.Time, error)

// GCP answers Google STS and IAM Credentials in process, for gcp targets
// (broker.GCPTarget.Client). Nil handlers answer federated-<n> (1 h) and
// sa-token-<n> (the requested lifetime).
type GCP struct {
	Exchange    GCPExchange
	Impersonate GCPImpersonate
	exchanges   atomic.Int64
	impersonate atomic.Int64
}

// ExchangeToken counts the call and runs Exchange.
func (g *GCP) ExchangeToken(ctx context.Context, endpoint string, req struct {
	Audience, Scope, SubjectToken, SubjectTokenType string
}) (string, int64, error) {
	n := int(g.exchanges.Add(1))
	if g.Exchange == nil {
		return "federated-" + strconv.Itoa(n), 3600, nil
	}
	return g.Exchange(ctx, n, endpoint, req.Audience, req.SubjectToken)
}

// GenerateAccessToken counts the call and runs Impersonate.
func (g *GCP) GenerateAccessToken(ctx context.Context, _, serviceAccount, federatedToken string, _ []string, lifetime time.Duration) (string, time.Time, error) {
	n := int(g.impersonate.Add(1))
	if g.Impersonate == nil {
		return "sa-token-" + strconv.Itoa(n), time.Now().Add(lifetime), nil
	}
	return g.Impersonate(ctx, n, serviceAccount, federatedToken, lifetime)
}

// Calls returns the numbers of exchanges and impersonations.
func (g *GCP) Calls() (exchanges, impersonations int) {
	return int(g.exchanges.Load()), int(g.impersonate.Load())
}
