package broker

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/chainbroker/chainbroker/token"
)

// Policy conditions (ChainGrant.When) are CEL expressions
// (https://cel.dev), compiled and type-checked once when the broker starts
// and evaluated per chain with a cost limit. The environment is CEL's
// standard library and its string extension (ext.Strings) only: no function
// reaches the network, the file system or the clock; `now` is the broker's clock, read once per evaluation.
//
// Variables:
//
//	subject          map(string, dyn)  the verified subject token's claims
//	                                   (only where the source's tokens are verified)
//	caller.name      string            the authenticated caller
//	caller.method    string            how it authenticated (api_key, mtls, jwt, anonymous; "" when unknown)
//	request.scopes, request.resources  list(string)
//	request.audience, request.target, request.source, request.profile  string
//	now              timestamp
//
// caller.* and request.* are declared as qualified names, so a misspelt
// field (request.scope) is an undeclared reference at start-up.
const (
	// MaxConditionLength bounds a condition's source text.
	MaxConditionLength = 4096
	// conditionCostLimit bounds one evaluation (CEL cost units: roughly one
	// per operation or list element visited): far above any policy
	// condition, far below a runaway comprehension.
	conditionCostLimit = 100_000
	// conditionInterruptEvery: comprehensions check the context (the
	// chain's deadline) every this many iterations.
	conditionInterruptEvery = 100
)

var (
	celVarsRequest = []cel.EnvOption{
		cel.Variable("caller.name", cel.StringType),
		cel.Variable("caller.method", cel.StringType),
		cel.Variable("request.scopes", cel.ListType(cel.StringType)),
		cel.Variable("request.resources", cel.ListType(cel.StringType)),
		cel.Variable("request.audience", cel.StringType),
		cel.Variable("request.target", cel.StringType),
		cel.Variable("request.source", cel.StringType),
		cel.Variable("request.profile", cel.StringType),
		cel.Variable("now", cel.TimestampType),
	}
	celVarSubject = cel.Variable("subject", cel.MapType(cel.StringType, cel.DynType))
)

// conditionEnv is the CEL environment of conditions; subject is declared
// only when the source's subject tokens are verified.
func conditionEnv(subjectAvailable bool) (*cel.Env, error) {
	opts := append([]cel.EnvOption{
		cel.CrossTypeNumericComparisons(true),
		cel.ParserRecursionLimit(64),
		cel.ParserExpressionSizeLimit(MaxConditionLength),
		ext.Strings(), // split, substring, lowerAscii, join, ...: pure functions
	}, celVarsRequest...)
	if subjectAvailable {
		opts = append(opts, celVarSubject)
	}
	return cel.NewEnv(opts...)
}

// condition is a compiled ChainGrant.When.
type condition struct {
	where   string // "policy[i].chains[j].when", for messages and logs
	program cel.Program
}

// CompileCondition checks a policy condition as the broker would at start-up:
// it must parse, type-check against the condition variables (subject only
// when subjectAvailable) and have type bool. Configuration validation uses it
// to report errors with the other problems.
func CompileCondition(expr string, subjectAvailable bool) error {
	_, err := compileCondition(expr, subjectAvailable)
	return err
}

func compileCondition(expr string, subjectAvailable bool) (cel.Program, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, errors.New("empty expression")
	}
	if len(expr) > MaxConditionLength {
		return nil, fmt.Errorf("longer than %d bytes", MaxConditionLength)
	}
	env, err := conditionEnv(subjectAvailable)
	if err != nil {
		return nil, fmt.Errorf("CEL environment: %w", err)
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		msg := celErrors(iss.Err())
		if !subjectAvailable && strings.Contains(msg, "undeclared reference to 'subject'") {
			msg += " (subject is only available where the source domain verifies subject tokens, or in issue mode)"
		}
		return nil, errors.New(msg)
	}
	// A dyn result (subject.email_verified) must be a bool when evaluated:
	// anything else is an evaluation error, so false.
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) && !t.IsExactType(cel.DynType) {
		return nil, fmt.Errorf("must be a bool expression, not %s", t)
	}
	prg, err := env.Program(ast,
		cel.CostLimit(conditionCostLimit),
		cel.InterruptCheckFrequency(conditionInterruptEvery),
		cel.EvalOptions(cel.OptOptimize),
	)
	if err != nil {
		return nil, fmt.Errorf("CEL program: %w", err)
	}
	return prg, nil
}

// celErrors is CEL's compile errors, one line each, without the source
// snippets CEL adds.
func celErrors(err error) string {
	var lines []string
	for _, l := range strings.Split(err.Error(), "\n") {
		if strings.HasPrefix(l, "ERROR: ") {
			lines = append(lines, strings.ReplaceAll(l, " (in container '')", ""))
		}
	}
	return strings.Join(lines, "; ")
}

// conditionInput is what a condition sees of one chain: a CEL activation
// resolving the variables by name, without building a map per chain.
type conditionInput struct {
	subject *claimsMap // nil when the subject token is not verified
	req     *Request
	source  string
	target  string
	profile string
	now     time.Time
}

// ResolveName implements interpreter.Activation.
func (in *conditionInput) ResolveName(name string) (any, bool) {
	switch name {
	case "subject":
		if in.subject == nil {
			return nil, false
		}
		return in.subject, true
	case "caller.name":
		return in.req.Caller, true
	case "caller.method":
		return in.req.CallerMethod, true
	case "request.scopes":
		return types.NewStringList(types.DefaultTypeAdapter, in.req.Scopes), true
	case "request.resources":
		return types.NewStringList(types.DefaultTypeAdapter, in.req.Resources), true
	case "request.audience":
		return in.req.Audience, true
	case "request.target":
		return in.target, true
	case "request.source":
		return in.source, true
	case "request.profile":
		return in.profile, true
	case "now":
		return types.Timestamp{Time: in.now}, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (in *conditionInput) Parent() interpreter.Activation { return nil }

// eval reports whether the condition holds. An evaluation error (a missing
// claim, a claim of another type, the cost limit) is an error: the caller
// counts it as false.
func (c *condition) eval(ctx context.Context, act interpreter.Activation) (bool, error) {
	out, _, err := c.program.ContextEval(ctx, act)
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("result is %s, not bool", out.Type())
	}
	return b, nil
}

// claimsMap is the verified subject token's claims as a CEL map, decoding
// only the claims a condition reads (subject.tenant decodes tenant alone);
// what needs them all (iteration, size, equality) decodes the payload once.
type claimsMap struct {
	tok  *token.Token
	raw  string // the compact token, for the whole payload
	all  traits.Mapper
	errf error
}

var _ traits.Mapper = (*claimsMap)(nil)

func (m *claimsMap) full() (traits.Mapper, error) {
	if m.all == nil && m.errf == nil {
		claims, err := decodeClaims(m.raw)
		if err != nil {
			m.errf = err
		} else {
			m.all = types.NewStringInterfaceMap(types.DefaultTypeAdapter, claims)
		}
	}
	return m.all, m.errf
}

func (m *claimsMap) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(key), false
	}
	raw, ok := m.tok.Claim(string(k))
	if !ok {
		return nil, false
	}
	if n := len(raw); n >= 2 && raw[0] == '"' && raw[n-1] == '"' && !bytes.ContainsAny(raw[1:n-1], "\\\"") {
		return types.String(raw[1 : n-1]), true // a plain JSON string (valid: the token parsed)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return types.NewErr("claim %q: %v", string(k), err), false
	}
	return types.DefaultTypeAdapter.NativeToValue(v), true
}

func (m *claimsMap) Get(key ref.Val) ref.Val {
	v, found := m.Find(key)
	switch {
	case found:
		return v
	case v != nil:
		return v
	}
	return types.NewErr("no such key: %v", key)
}

func (m *claimsMap) Contains(key ref.Val) ref.Val {
	v, found := m.Find(key)
	if !found && v != nil {
		return v
	}
	return types.Bool(found)
}

func (m *claimsMap) Iterator() traits.Iterator {
	all, err := m.full()
	if err != nil {
		return errIterator{types.WrapErr(err)}
	}
	return all.Iterator()
}

func (m *claimsMap) Size() ref.Val {
	all, err := m.full()
	if err != nil {
		return types.WrapErr(err)
	}
	return all.Size()
}

func (m *claimsMap) ConvertToNative(t reflect.Type) (any, error) {
	all, err := m.full()
	if err != nil {
		return nil, err
	}
	return all.ConvertToNative(t)
}

func (m *claimsMap) ConvertToType(t ref.Type) ref.Val {
	switch t {
	case types.MapType:
		return m
	case types.TypeType:
		return types.MapType
	}
	return types.NewErr("type conversion error from map to '%s'", t)
}

func (m *claimsMap) Equal(other ref.Val) ref.Val {
	all, err := m.full()
	if err != nil {
		return types.WrapErr(err)
	}
	return all.Equal(other)
}

func (m *claimsMap) Type() ref.Type { return types.MapType }

func (m *claimsMap) Value() any {
	all, err := m.full()
	if err != nil {
		return nil
	}
	return all.Value()
}

// errIterator is an iterator over nothing that reports err.
type errIterator struct{ err ref.Val }

func (e errIterator) HasNext() ref.Val                          { return e.err }
func (e errIterator) Next() ref.Val                             { return e.err }
func (e errIterator) ConvertToNative(reflect.Type) (any, error) { return nil, errors.New("iterator") }
func (e errIterator) ConvertToType(ref.Type) ref.Val            { return e.err }
func (e errIterator) Equal(ref.Val) ref.Val                     { return e.err }
func (e errIterator) Type() ref.Type                            { return types.IteratorType }
func (e errIterator) Value() any                                { return nil }

// decodeClaims decodes the claims of a (verified, compact JWS) subject
// token. JSON numbers are doubles, as in CEL's JSON mapping.
func decodeClaims(raw string) (map[string]any, error) {
	parts := strings.SplitN(raw, ".", 3)
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWS")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	if claims == nil {
		claims = map[string]any{}
	}
	return claims, nil
}

// MaxComputedClaimBytes bounds a computed claim's JSON encoding.
const MaxComputedClaimBytes = 4096

// computedClaim is a compiled Transcription.Compute entry.
type computedClaim struct {
	name    string
	program cel.Program
}

// CompileComputedClaim checks a computed claim (Transcription.Compute) as
// the broker would at start-up: name not one the broker sets, expression
// over the condition variables (subject always: issue mode verifies it) of a
// JSON type (bool, int, uint, double, string, list, map with string keys,
// null, or dyn checked when evaluated).
func CompileComputedClaim(name, expr string) error {
	_, err := compileComputedClaim(name, expr)
	return err
}

func compileComputedClaim(name, expr string) (cel.Program, error) {
	if name == "" {
		return nil, errors.New("claim name required")
	}
	if slices.Contains(ReservedClaims, name) {
		return nil, fmt.Errorf("%q is set by the broker, not computed", name)
	}
	if strings.TrimSpace(expr) == "" {
		return nil, errors.New("empty expression")
	}
	if len(expr) > MaxConditionLength {
		return nil, fmt.Errorf("longer than %d bytes", MaxConditionLength)
	}
	env, err := conditionEnv(true)
	if err != nil {
		return nil, fmt.Errorf("CEL environment: %w", err)
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, errors.New(celErrors(iss.Err()))
	}
	if !jsonType(ast.OutputType()) {
		return nil, fmt.Errorf("must have a JSON type (bool, int, uint, double, string, list, map with string keys), not %s", ast.OutputType())
	}
	return env.Program(ast, cel.CostLimit(conditionCostLimit), cel.InterruptCheckFrequency(conditionInterruptEvery),
		cel.EvalOptions(cel.OptOptimize))
}

// jsonType reports whether values of t are JSON values (dyn: checked when
// evaluated).
func jsonType(t *cel.Type) bool {
	switch t.Kind() {
	case types.BoolKind, types.IntKind, types.UintKind, types.DoubleKind, types.StringKind, types.NullTypeKind, types.DynKind:
		return true
	case types.ListKind:
		return jsonType(t.Parameters()[0])
	case types.MapKind:
		k := t.Parameters()[0].Kind()
		return (k == types.StringKind || k == types.DynKind) && jsonType(t.Parameters()[1])
	}
	return false
}

// evalComputed evaluates a computed claim to its JSON encoding, bounded.
func (c *computedClaim) eval(ctx context.Context, act interpreter.Activation) (json.RawMessage, error) {
	out, _, err := c.program.ContextEval(ctx, act)
	if err != nil {
		return nil, err
	}
	v, err := out.ConvertToNative(reflect.TypeFor[*structpb.Value]())
	if err != nil {
		return nil, fmt.Errorf("not a JSON value: %w", err)
	}
	raw, err := json.Marshal(v.(*structpb.Value).AsInterface())
	if err != nil {
		return nil, err
	}
	if len(raw) > MaxComputedClaimBytes {
		return nil, fmt.Errorf("%d bytes of JSON, over %d", len(raw), MaxComputedClaimBytes)
	}
	return raw, nil
}
