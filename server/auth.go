package server

import (
	"context"
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

	"go.opentelemetry.io/otel/trace"

	"github.com/chainbroker/chainbroker/auth"
)

// Metadata keys of caller credentials. Over REST, the gateway forwards the
// Authorization and X-Api-Key headers as these. A client certificate is
// never read from metadata: it comes from the TLS layer of the call's own
// connection (credentialsFrom).
const (
	mdAPIKey        = "x-api-key"
	mdAuthorization = "authorization"
)

// eventAuthenticated marks, on the call's span, the caller authenticated
// and within its rate limit.
const eventAuthenticated = "chainbroker.caller_authenticated"

// unauthenticatedMethods need no caller credentials: probes and schema.
func unauthenticatedMethod(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, healthMethodPrefix) ||
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
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.AddEvent(eventAuthenticated)
	}
	// What the call's authentication found goes in the call's one context
	// value (callInfo, from withRequestID): no allocation. Without one
	// (authInterceptor called on its own), a value of its own.
	a := authed{rt: rt, caller: caller.Name, method: string(caller.Method)}
	if c := callFrom(ctx); c != nil && !c.authenticated {
		c.auth, c.authenticated = a, true
		return h(ctx, req)
	}
	return h(context.WithValue(ctx, callKey{}, &callInfo{requestID: RequestIDFromContext(ctx), authenticated: true, auth: a}), req)
}

// authed is what a call's authentication found: the configuration it read
// (the call keeps it to its end), the caller's name, and how the caller
// authenticated (auth.Method, for the policy conditions' caller.method).
type authed struct {
	rt     *runState
	caller string
	method string
}

func authedFrom(ctx context.Context) *authed {
	if c := callFrom(ctx); c != nil && c.authenticated {
		return &c.auth
	}
	return nil
}

func callerMethodFromContext(ctx context.Context) string {
	if a := authedFrom(ctx); a != nil {
		return a.method
	}
	return ""
}

// credentialsFrom collects what the call carries. A client certificate comes
// from the TLS layer of the call's connection only: the gRPC listener's,
// or, over REST, the HTTP listener's (tlsPeer gives a REST call the same
// peer), never from metadata or headers.
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
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 {
			c.PeerChain = ti.State.VerifiedChains[0]
		}
	}
	return c
}

// tlsPeer gives a REST call over TLS the peer a gRPC call over TLS has: its
// connection's TLS state, with the client certificate chain the HTTP
// listener verified (credentialsFrom reads it). Nothing in the request's
// headers or body can set it.
func tlsPeer(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if r.TLS != nil {
			r = r.WithContext(peer.NewContext(r.Context(), &peer.Peer{Addr: restAddr(r.RemoteAddr), AuthInfo: credentials.TLSInfo{State: *r.TLS}}))
		}
		next(w, r, params)
	}
}

// restAddr is a REST client's address (http.Request.RemoteAddr).
type restAddr string

func (restAddr) Network() string  { return "tcp" }
func (a restAddr) String() string { return string(a) }

// gatewayHeaderMatcher makes only the credential headers and the request id
// incoming metadata of a REST call.
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
