package broker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
)

// Policy conditions (ChainGrant.When) are CEL expressions
// (https://cel.dev), compiled and type-checked once when the broker starts
// and evaluated per chain with a cost limit. The environment is CEL's
// standard library only: no function reaches the network, the file system
// or the clock; `now` is the broker's clock, read once per evaluation.
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
		// One line per error, without the source snippet CEL adds.
		var lines []string
		for _, l := range strings.Split(iss.Err().Error(), "\n") {
			if strings.HasPrefix(l, "ERROR: ") {
				lines = append(lines, strings.ReplaceAll(l, " (in container '')", ""))
			}
		}
		msg := strings.Join(lines, "; ")
		if !subjectAvailable && strings.Contains(msg, "undeclared reference to 'subject'") {
			msg += " (subject is only available where the source domain verifies subject tokens, or in issue mode)"
		}
		return nil, errors.New(msg)
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("must be a bool expression, not %s", ast.OutputType())
	}
	prg, err := env.Program(ast,
		cel.CostLimit(conditionCostLimit),
		cel.InterruptCheckFrequency(conditionInterruptEvery),
	)
	if err != nil {
		return nil, fmt.Errorf("CEL program: %w", err)
	}
	return prg, nil
}

// conditionInput is what a condition sees of one chain.
type conditionInput struct {
	subject map[string]any // nil when the subject token is not verified
	req     *Request
	source  string
	target  string
	profile string
	now     time.Time
}

func (in *conditionInput) activation() map[string]any {
	a := map[string]any{
		"caller.name":       in.req.Caller,
		"caller.method":     in.req.CallerMethod,
		"request.scopes":    nonNil(in.req.Scopes),
		"request.resources": nonNil(in.req.Resources),
		"request.audience":  in.req.Audience,
		"request.target":    in.target,
		"request.source":    in.source,
		"request.profile":   in.profile,
		"now":               in.now,
	}
	if in.subject != nil {
		a["subject"] = in.subject
	}
	return a
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// eval reports whether the condition holds. An evaluation error (a missing
// claim, a claim of another type, the cost limit) is an error: the caller
// counts it as false.
func (c *condition) eval(ctx context.Context, act map[string]any) (bool, error) {
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

// subjectClaims decodes the claims of a (verified, compact JWS) subject
// token for conditions. JSON numbers are doubles, as in CEL's JSON mapping.
func subjectClaims(raw string) (map[string]any, error) {
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
