package server

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/chainbroker/chainbroker/auth"
)

// Metadata keys of caller credentials. Over REST, the gateway forwards the
// Authorization and X-Api-Key headers as these, and nothing else the client
// sends can pose as forwardedCertKey.
const (
	mdAPIKey         = "x-api-key"
	mdAuthorization  = "authorization"
	forwardedCertKey = "x-chainbroker-client-cert" // set by our gateway only
)

// unauthenticatedMethods need no caller credentials: probes and schema.
func unauthenticatedMethod(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/") ||
		strings.HasPrefix(fullMethod, "/grpc.reflection.")
}

// authInterceptor authenticates every call to chainbroker's services, puts
// the caller's name in the context, and applies the per-caller rate limit.
func (s *Server) authInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if unauthenticatedMethod(info.FullMethod) {
		return h(ctx, req)
	}
	rt := s.rt.Load() // the call's configuration, from authentication to its end
	caller, err := rt.auth.Authenticate(ctx, credentialsFrom(ctx))
	if err != nil {
		s.log.InfoContext(ctx, "unauthenticated call", "method", info.FullMethod, "error", err)
		return nil, errorStatus(codes.Unauthenticated, reasonUnauthenticated, err.Error(), nil)
	}
	if rt.limiter != nil {
		if ok, wait := rt.limiter.allow(caller.Name, time.Now()); !ok {
			st := status.New(codes.ResourceExhausted, fmt.Sprintf("rate limit exceeded for caller %q; retry in %s", caller.Name, wait.Round(time.Millisecond)))
			st, _ = st.WithDetails(
				&errdetails.ErrorInfo{Reason: reasonRateLimited, Domain: ErrorDomain},
				&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)},
			)
			return nil, st.Err()
		}
	}
	ctx = context.WithValue(ctx, runtimeKey{}, rt)
	ctx = context.WithValue(ctx, callerMethodKey{}, string(caller.Method))
	return h(context.WithValue(ctx, callerKey{}, caller.Name), req)
}

// callerMethodKey holds how the caller authenticated (auth.Method), for
// the broker's policy conditions (caller.method).
type callerMethodKey struct{}

func callerMethodFromContext(ctx context.Context) string {
	m, _ := ctx.Value(callerMethodKey{}).(string)
	return m
}

// credentialsFrom collects what the call carries. A client certificate comes
// from the TLS layer of a direct gRPC call, or — only on connections from
// this server's own gateway — from the metadata the gateway set after its
// TLS layer verified the REST client's certificate.
func credentialsFrom(ctx context.Context) auth.Credentials {
	var c auth.Credentials
	// ValueFromIncomingContext copies one key's values, not the whole metadata.
	if v := metadata.ValueFromIncomingContext(ctx, mdAPIKey); len(v) > 0 {
		c.APIKey = v[0]
	}
	if v := metadata.ValueFromIncomingContext(ctx, mdAuthorization); len(v) > 0 {
		c.Bearer = auth.BearerFromHeader(v[0])
		if c.Bearer == "" && v[0] != "" {
			c.Bearer = "\x00malformed" // presented but not a bearer token: refuse, don't fall back
		}
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return c
	}
	if _, fromGateway := p.Addr.(gatewayAddr); fromGateway {
		if v := metadata.ValueFromIncomingContext(ctx, forwardedCertKey); len(v) > 0 {
			if der, err := base64.StdEncoding.DecodeString(v[0]); err == nil {
				if cert, err := x509.ParseCertificate(der); err == nil {
					c.PeerChain = []*x509.Certificate{cert}
				}
			}
		}
		return c
	}
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 {
		c.PeerChain = ti.State.VerifiedChains[0]
	}
	return c
}

// gatewayMetadata forwards a verified REST client certificate to the gRPC
// server (over the in-process pipe only).
func gatewayMetadata(_ context.Context, r *http.Request) metadata.MD {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return nil
	}
	return metadata.Pairs(forwardedCertKey, base64.StdEncoding.EncodeToString(r.TLS.VerifiedChains[0][0].Raw))
}

// gatewayHeaderMatcher forwards only the credential headers: in particular,
// no client header can become forwardedCertKey.
func gatewayHeaderMatcher(key string) (string, bool) {
	switch strings.ToLower(key) {
	case "authorization":
		return mdAuthorization, true
	case "x-api-key":
		return mdAPIKey, true
	case "x-request-id":
		return mdRequestID, true
	}
	return "", false
}

// errorStatus is a status with an ErrorInfo of chainbroker's domain.
func errorStatus(code codes.Code, reason, msg string, meta map[string]string) error {
	st := status.New(code, msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain, Metadata: meta}); err == nil {
		st = d
	}
	return st.Err()
}

// retryAfterErrorHandler is the gateway's error handler plus a Retry-After
// header when the status carries a RetryInfo (rate limits).
func retryAfterErrorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if st, ok := status.FromError(err); ok {
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok {
				secs := int(math.Ceil(ri.GetRetryDelay().AsDuration().Seconds()))
				w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
			}
		}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}
