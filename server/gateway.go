package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	otelcodes "go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	chainbroker "github.com/chainbroker/chainbroker"
	"github.com/chainbroker/chainbroker/broker"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
)

// gateway is what the REST facade adds to the grpc-gateway mux: every error
// the gateway produces itself (routing, body, query) goes through the one
// error map (errors.go) and gets an ErrorInfo like the services' errors, is
// logged (one line, never body content) and counted.
type gateway struct {
	log    *slog.Logger
	routes []restRoute
	mux    *runtime.ServeMux // set by the mux option below
	count  func(reason string)
}

// gatewayOptions are the REST gateway's error handling and request checks,
// as options of runtime.NewServeMux.
func (s *Server) gatewayOptions() []runtime.ServeMuxOption {
	routes, err := parseRoutes(chainbroker.OpenAPI)
	if err != nil {
		panic("server: the embedded OpenAPI description: " + err.Error()) // a build defect, caught by the tests
	}
	routes = append(routes, restRoute{method: http.MethodGet, segments: []string{"healthz"}, query: map[string]bool{"service": true}, names: []string{"service"}})
	g := &gateway{log: s.log, routes: routes, count: func(string) {}}
	if s.cfg.Metrics != nil {
		g.count = s.cfg.Metrics.RESTRefused
	}
	return []runtime.ServeMuxOption{
		func(mux *runtime.ServeMux) { g.mux = mux },
		runtime.WithErrorHandler(g.errorHandler),
		runtime.WithRoutingErrorHandler(g.routingErrorHandler),
		runtime.WithMiddlewares(g.check, tlsPeer),
	}
}

// restRoute is one route of the REST API, as the OpenAPI description
// generated from proto/chainbroker/v1/http.yaml says.
type restRoute struct {
	method   string
	segments []string        // "{name}" is a path variable
	body     bool            // the request message is the JSON body
	query    map[string]bool // accepted query parameters (proto and JSON names)
	names    []string        // the query parameters' proto names, for messages
}

func parseRoutes(openapi []byte) ([]restRoute, error) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openapi, &doc); err != nil {
		return nil, err
	}
	var routes []restRoute
	for path, ops := range doc.Paths {
		for method, raw := range ops {
			m := strings.ToUpper(method)
			switch m {
			case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
			default:
				continue // path-level "parameters" and the like
			}
			var op struct {
				Parameters []struct{ Name, In string } `json:"parameters"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				return nil, fmt.Errorf("%s %s: %w", m, path, err)
			}
			rt := restRoute{method: m, segments: strings.Split(strings.TrimPrefix(path, "/"), "/"), query: map[string]bool{}}
			for _, p := range op.Parameters {
				switch p.In {
				case "body":
					rt.body = true
				case "query":
					rt.query[p.Name], rt.query[jsonName(p.Name)] = true, true
					rt.names = append(rt.names, p.Name)
				}
			}
			routes = append(routes, rt)
		}
	}
	if len(routes) == 0 {
		return nil, errors.New("no paths")
	}
	return routes, nil
}

// pathSegments are a request path's segments, as matches takes them.
func pathSegments(path string) []string { return strings.Split(strings.TrimPrefix(path, "/"), "/") }

// matches reports whether the route's path template matches a path's
// segments.
func (rt *restRoute) matches(segs []string) bool {
	if len(segs) != len(rt.segments) {
		return false
	}
	for i, s := range rt.segments {
		if !strings.HasPrefix(s, "{") && s != segs[i] {
			return false
		}
	}
	return true
}

// find returns the route for method and path.
func (g *gateway) find(method, path string) (*restRoute, bool) {
	segs := pathSegments(path)
	for i := range g.routes {
		if g.routes[i].method == method && g.routes[i].matches(segs) {
			return &g.routes[i], true
		}
	}
	return nil, false
}

// allowed lists the methods path has, for the Allow header of a 405.
func (g *gateway) allowed(path string) []string {
	var out []string
	segs := pathSegments(path)
	for i := range g.routes {
		if g.routes[i].matches(segs) && !slices.Contains(out, g.routes[i].method) {
			out = append(out, g.routes[i].method)
		}
	}
	slices.Sort(out)
	return out
}

// check runs before each gateway handler: the body must be JSON (415) and
// within MaxRequestBytes (413); query parameters must be the request's
// (400 naming the unknown one); an audit outcome may be written as chainctl
// accepts it (success, failure, cache_hit).
func (g *gateway) check(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		rt, ok := g.find(r.Method, r.URL.Path)
		switch {
		case !ok && len(g.allowed(r.URL.Path)) > 0:
			// A POST answered by a GET route: the gateway's fallback for
			// form-encoded bodies (or X-HTTP-Method-Override). Not part of
			// this API.
			g.refuseMethod(w, r)
			return
		case !ok:
			next(w, r, params) // not an API route (/healthz)
			return
		}
		if rt.body {
			body, err := readBody(r)
			var tooLarge *http.MaxBytesError
			switch {
			case errors.As(err, &tooLarge) || len(body) > MaxRequestBytes:
				g.refuse(w, r, http.StatusRequestEntityTooLarge, status.New(codes.InvalidArgument,
					fmt.Sprintf("the request body is larger than the limit of %d bytes (64 KiB)", MaxRequestBytes)),
					reasonRequestTooLarge, map[string]string{"limit_bytes": strconv.Itoa(MaxRequestBytes)})
				return
			case err != nil:
				g.refuse(w, r, http.StatusBadRequest, status.New(codes.InvalidArgument, "the request body could not be read"),
					string(broker.ReasonRequestInvalid), nil)
				return
			}
			// A JSON object is taken whatever the Content-Type says (curl -d
			// sends form-urlencoded by default, and scripts rely on it); a
			// body that is not one and is not declared JSON is refused.
			if ct := r.Header.Get("Content-Type"); ct != "" && !jsonMediaType(ct) && !jsonObject(body) {
				g.refuse(w, r, http.StatusUnsupportedMediaType, status.New(codes.InvalidArgument,
					"the request body must be a JSON object (Content-Type: application/json)"), reasonMediaTypeUnsupported, nil)
				return
			}
			r.Body = &checkedBody{Reader: bytes.NewReader(body), raw: body}
		}
		if r.URL.RawQuery != "" {
			if !g.checkQuery(w, r, rt) {
				return
			}
		}
		next(w, r, params)
	}
}

// readBody reads a request body, up to MaxRequestBytes+1 bytes, into a
// buffer sized by its Content-Length when it has one.
func readBody(r *http.Request) ([]byte, error) {
	const limit = MaxRequestBytes + 1
	size := limit
	if r.ContentLength >= 0 && r.ContentLength < limit {
		size = int(r.ContentLength) + 1 // the extra byte finds EOF (or a body longer than said)
	}
	buf := make([]byte, 0, min(size, 4<<10))
	for len(buf) < limit {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(cap(buf), limit-len(buf)))
		}
		n, err := r.Body.Read(buf[len(buf):min(cap(buf), limit)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// checkedBody is a request body the checks have read: the gateway's JSON
// decoder (restJSON) parses raw once instead of reading the Reader.
type checkedBody struct {
	*bytes.Reader
	raw []byte
}

func (*checkedBody) Close() error { return nil }

// restJSON is the REST facade's JSON: runtime.JSONPb, whose decoder scans a
// request body with encoding/json into a json.RawMessage and then parses
// that with protojson. For a body the checks read (checkedBody) that is
// valid JSON, it parses the same bytes with protojson directly, once, with
// the same options: the same message or the same error. Anything else (not
// JSON: the error describeDecodeError reads is encoding/json's; an empty
// body) goes through JSONPb's decoder.
type restJSON struct {
	runtime.JSONPb
}

func (j *restJSON) NewDecoder(r io.Reader) runtime.Decoder {
	body, ok := r.(*checkedBody)
	if !ok {
		return j.JSONPb.NewDecoder(r)
	}
	return runtime.DecoderFunc(func(v any) error {
		m, ok := v.(proto.Message)
		// What json.Decoder would hand protojson: the value, from its
		// first byte (error positions count from there).
		raw := bytes.TrimLeft(body.raw, " \t\r\n")
		if !ok || !json.Valid(raw) {
			return j.JSONPb.NewDecoder(body).Decode(v)
		}
		body.Reset(nil) // consumed
		return j.UnmarshalOptions.Unmarshal(raw, m)
	})
}

// checkQuery refuses unknown query parameters and normalises the outcome.
func (g *gateway) checkQuery(w http.ResponseWriter, r *http.Request, rt *restRoute) bool {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		g.refuse(w, r, http.StatusBadRequest, status.New(codes.InvalidArgument, "the query string is malformed"),
			string(broker.ReasonRequestInvalid), nil)
		return false
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if base, _, _ := strings.Cut(k, "."); rt.query[base] {
			continue
		}
		msg := fmt.Sprintf("unknown query parameter %q", safeName(k))
		if len(rt.names) > 0 {
			msg += "; known: " + strings.Join(rt.names, ", ")
		} else {
			msg += "; this call takes none"
		}
		g.refuse(w, r, http.StatusBadRequest, status.New(codes.InvalidArgument, msg),
			string(broker.ReasonRequestInvalid), fieldMeta(safeName(k)))
		return false
	}
	if vs, ok := q["outcome"]; ok && rt.query["outcome"] {
		for i, v := range vs {
			o, ok := parseOutcome(v)
			if !ok {
				g.refuse(w, r, http.StatusBadRequest, status.New(codes.InvalidArgument,
					fmt.Sprintf("outcome: unknown outcome %q; valid: success, failure, cache_hit (or OUTCOME_SUCCESS, OUTCOME_FAILURE, OUTCOME_CACHE_HIT)",
						broker.BoundText(v, 64))), string(broker.ReasonRequestInvalid), fieldMeta("outcome"))
				return false
			}
			vs[i] = o.String()
		}
		r.URL.RawQuery = q.Encode()
	}
	return true
}

// parseOutcome reads an audit outcome as chainctl does: success, failure,
// cache_hit (or cache-hit), their enum names, any case; "" or "any" is every
// outcome.
func parseOutcome(s string) (pb.Outcome, bool) {
	n := strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), "-", "_"))
	if n == "" || n == "ANY" || n == "OUTCOME_UNSPECIFIED" {
		return pb.Outcome_OUTCOME_UNSPECIFIED, true
	}
	if !strings.HasPrefix(n, "OUTCOME_") {
		n = "OUTCOME_" + n
	}
	v, ok := pb.Outcome_value[n]
	return pb.Outcome(v), ok
}

// jsonObject reports whether body, after leading white space, opens a JSON
// object.
func jsonObject(body []byte) bool {
	b := bytes.TrimLeft(body, " \t\r\n")
	return len(b) > 0 && b[0] == '{'
}

func jsonMediaType(ct string) bool {
	if ct == "application/json" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// errorHandler answers every error of a gateway call. Services' errors
// already carry their ErrorInfo (and were logged where they arose); the
// gateway's own (undecodable body, bad query value, the call's deadline
// expiring in the gateway) get theirs here.
func (g *gateway) errorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	inner := err
	var hse *runtime.HTTPStatusError
	if errors.As(err, &hse) {
		inner = hse.Err
	}
	st := status.Convert(inner)
	if hse != nil && hse.HTTPStatus == http.StatusBadRequest && st.Code() == codes.Unknown {
		st = status.New(codes.InvalidArgument, "malformed request path") // the mux's MalformedSequenceError
	}
	if hasErrorInfo(st) {
		retryAfterErrorHandler(ctx, mux, m, w, r, err)
		return
	}
	edge, httpStatus := gatewayStatus(st)
	if edge.Code() == codes.Internal {
		g.log.ErrorContext(ctx, "rest gateway: internal error", "method", r.Method, "path", safePath(r.URL.Path), "error", st.Err())
	}
	g.write(ctx, mux, m, w, r, httpStatus, edge)
}

// routingErrorHandler answers requests no route takes: 405 with Allow when
// the path has other methods, 404 otherwise.
func (g *gateway) routingErrorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	switch httpStatus {
	case http.StatusMethodNotAllowed:
		g.refuseMethod(w, r)
	case http.StatusNotFound:
		g.write(ctx, mux, m, w, r, http.StatusNotFound,
			infoStatus(status.New(codes.NotFound, "no such path: "+safePath(r.URL.Path)), reasonNotFound, nil))
	default:
		g.write(ctx, mux, m, w, r, http.StatusBadRequest,
			infoStatus(status.New(codes.InvalidArgument, "malformed request path"), string(broker.ReasonRequestInvalid), nil))
	}
}

func (g *gateway) refuseMethod(w http.ResponseWriter, r *http.Request) {
	allow := g.allowed(r.URL.Path)
	w.Header().Set("Allow", strings.Join(allow, ", "))
	g.refuse(w, r, http.StatusMethodNotAllowed, status.New(codes.Unimplemented,
		fmt.Sprintf("method %s is not allowed on %s; allowed: %s", safeName(r.Method), safePath(r.URL.Path), strings.Join(allow, ", "))),
		reasonMethodNotAllowed, map[string]string{"allow": strings.Join(allow, ", ")})
}

// refuse answers a request the gateway refuses itself.
func (g *gateway) refuse(w http.ResponseWriter, r *http.Request, httpStatus int, st *status.Status, reason string, meta map[string]string) {
	_, m := runtime.MarshalerForRequest(g.mux, r)
	g.write(r.Context(), g.mux, m, w, r, httpStatus, infoStatus(st, reason, meta))
}

// write logs and counts an error of the gateway's own, and answers it.
func (g *gateway) write(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int, st *status.Status) {
	reason, field := "", ""
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			reason, field = info.GetReason(), info.GetMetadata()["field"]
		}
	}
	if httpStatus == 0 {
		httpStatus = runtime.HTTPStatusFromCode(st.Code())
	}
	level := slog.LevelInfo
	if httpStatus >= 500 {
		level = slog.LevelWarn
	}
	g.log.LogAttrs(ctx, level, "rest request refused",
		slog.String("method", safeName(r.Method)), slog.String("path", safePath(r.URL.Path)),
		slog.Int("status", httpStatus), slog.String("reason", reason), slog.String("field", field))
	g.count(reason)
	retryAfterErrorHandler(ctx, mux, m, w, r, &runtime.HTTPStatusError{HTTPStatus: httpStatus, Err: st.Err()})
}

func hasErrorInfo(st *status.Status) bool {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			return true
		}
	}
	return false
}

// infoStatus is st with an ErrorInfo of chainbroker's domain.
func infoStatus(st *status.Status, reason string, meta map[string]string) *status.Status {
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain, Metadata: meta}); err == nil {
		return d
	}
	return st
}

func fieldMeta(field string) map[string]string {
	if field == "" {
		return nil
	}
	return map[string]string{"field": field}
}

// Messages of the gateway's JSON and query decoding (protojson, encoding/json,
// runtime.PopulateQueryParameters) that name a field. Values are never echoed.
var (
	reUnknownField  = regexp.MustCompile(`(unknown|duplicate) field "?([^"\s]*)"?`)
	reInvalidValue  = regexp.MustCompile(`invalid value for (\w+) field (\w+)`)
	reQueryField    = regexp.MustCompile(`parsing field "([^"]*)"`)
	rePosition      = regexp.MustCompile(`\(line (\d+):(\d+)\)`)
	reJSONCharacter = regexp.MustCompile(`^invalid character '.{1,4}' [a-z ]+$`)
)

// describeDecodeError turns a decoding error of the gateway into a field
// (proto name, "" if none) and a message that echoes no request value.
func describeDecodeError(msg string) (field, out string) {
	at := ""
	if p := rePosition.FindStringSubmatch(msg); p != nil {
		at = " (line " + p[1] + ":" + p[2] + ")"
	}
	switch {
	case reUnknownField.MatchString(msg):
		m := reUnknownField.FindStringSubmatch(msg)
		field = safeName(m[2])
		return field, fmt.Sprintf("request body: %s field %q%s", m[1], field, at)
	case reInvalidValue.MatchString(msg):
		m := reInvalidValue.FindStringSubmatch(msg)
		field = snakeName(m[2])
		return field, fmt.Sprintf("%s: invalid value, want a %s%s", field, m[1], at)
	case reQueryField.MatchString(msg):
		field = snakeName(safeName(reQueryField.FindStringSubmatch(msg)[1]))
		return field, field + ": invalid value"
	case reJSONCharacter.MatchString(msg), msg == "unexpected EOF":
		return "", "the request body is not valid JSON: " + msg
	case strings.Contains(msg, "syntax error"), strings.Contains(msg, "unexpected token"):
		// protojson reads JSON that encoding/json already accepted: the
		// shape is wrong (a string for a list, an object for a string, ...).
		return "", "the request body does not fit the request's fields: unexpected value" + at
	}
	return "", "the request could not be decoded" + at
}

// safeName keeps a name from the request printable and short.
func safeName(s string) string {
	var b strings.Builder
	for _, c := range s {
		if b.Len() >= 64 {
			b.WriteString("…")
			break
		}
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-' {
			b.WriteRune(c)
		} else {
			b.WriteRune('?')
		}
	}
	return b.String()
}

func safePath(p string) string { return broker.BoundText(strings.ToValidUTF8(p, "?"), 128) }

// snakeName is the proto name of a JSON (lowerCamel) field name.
func snakeName(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c >= 'A' && c <= 'Z' {
			b.WriteByte('_')
			c += 'a' - 'A'
		}
		b.WriteRune(c)
	}
	return b.String()
}

// jsonName is the JSON (lowerCamel) name of a proto field name.
func jsonName(s string) string {
	var b strings.Builder
	up := false
	for _, c := range s {
		switch {
		case c == '_':
			up = true
			continue
		case up && c >= 'a' && c <= 'z':
			c -= 'a' - 'A'
		}
		up = false
		b.WriteRune(c)
	}
	return b.String()
}

// The REST facade's services. grpc-gateway calls them directly
// (Register...HandlerServer) with the incoming metadata it builds from the
// request's headers (gatewayHeaderMatcher); each runs the service
// implementation the gRPC server runs, through restCall.
type restChainService struct {
	pb.UnimplementedChainServiceServer
	s *Server
}

func (r restChainService) Chain(ctx context.Context, in *pb.ChainRequest) (*pb.ChainResponse, error) {
	return restCall(ctx, r.s, pb.ChainService_Chain_FullMethodName, r.s.chain, in, r.s.chain.Chain)
}

func (r restChainService) ListDomains(ctx context.Context, in *pb.ListDomainsRequest) (*pb.ListDomainsResponse, error) {
	return restCall(ctx, r.s, pb.ChainService_ListDomains_FullMethodName, r.s.chain, in, r.s.chain.ListDomains)
}

type restAuditService struct {
	pb.UnimplementedAuditServiceServer
	s *Server
}

func (r restAuditService) ListAuditEvents(ctx context.Context, in *pb.ListAuditEventsRequest) (*pb.ListAuditEventsResponse, error) {
	return restCall(ctx, r.s, pb.AuditService_ListAuditEvents_FullMethodName, r.s.audit, in, r.s.audit.ListAuditEvents)
}

func (r restAuditService) GetAuditEvent(ctx context.Context, in *pb.GetAuditEventRequest) (*pb.GetAuditEventResponse, error) {
	return restCall(ctx, r.s, pb.AuditService_GetAuditEvent_FullMethodName, r.s.audit, in, r.s.audit.GetAuditEvent)
}

// restCall is one REST call of a service method: what the gRPC server does
// around a unary call, without its transport. The interceptors' work
// (Server.unary: recovery, request id, metrics, authentication, rate limit)
// runs as for gRPC, with the same grpc.UnaryServerInfo; with tracing, the
// call gets the server span the gRPC server's stats handler would give it
// (name, kind, attributes, status), under the HTTP server span; and an
// error that is not a status becomes one as grpc-go makes it (context
// errors keep their code, others are UNKNOWN).
func restCall[Req, Resp any](ctx context.Context, s *Server, method string, srv any, in Req, call func(context.Context, Req) (Resp, error)) (Resp, error) {
	var span trace.Span
	if s.tracer != nil {
		name := method[1:]
		ctx, span = s.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(semconv.RPCMethod(name), semconv.RPCSystemNameGRPC))
	}
	resp, err := s.unary(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: method}, func(ctx context.Context, req any) (any, error) {
		return call(ctx, req.(Req))
	})
	if err != nil {
		if _, ok := status.FromError(err); !ok {
			err = status.FromContextError(err).Err()
		}
	}
	if span != nil {
		st := status.Convert(err)
		if c, m := spanStatus(st); c != otelcodes.Unset {
			span.SetStatus(c, m)
		}
		span.SetAttributes(semconv.RPCResponseStatusCode(canonicalCode(st.Code())))
		span.End()
	}
	out, _ := resp.(Resp)
	return out, err
}

// spanStatus is a server span's status for a gRPC status, as otelgrpc sets
// it: an error for the codes that are the server's fault.
func spanStatus(st *status.Status) (otelcodes.Code, string) {
	switch st.Code() {
	case codes.Unknown, codes.DeadlineExceeded, codes.Unimplemented, codes.Internal, codes.Unavailable, codes.DataLoss:
		return otelcodes.Error, st.Message()
	}
	return otelcodes.Unset, ""
}

// canonicalCode is a gRPC code's name as in the gRPC specification
// (rpc.response.status_code).
func canonicalCode(c codes.Code) string {
	names := [...]string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
		"PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
		"INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}
	if int(c) < len(names) {
		return names[c]
	}
	return "CODE(" + strconv.Itoa(int(c)) + ")"
}
