package server

import (
	"slices"
	"strings"
	"testing"

	chainbroker "github.com/chainbroker/chainbroker"
)

// The routes and query parameters the gateway checks against come from the
// embedded OpenAPI description: every REST call of the API is there.
func TestGatewayRoutesFromOpenAPI(t *testing.T) {
	routes, err := parseRoutes(chainbroker.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	g := &gateway{routes: routes}
	for path, want := range map[string]string{"/v1/chain": "POST", "/v1/domains": "GET", "/v1/audit/events": "GET",
		"/v1/audit/events/1-0": "GET", "/v1/nothing": "", "/v1/audit/events/1-0/x": ""} {
		if got := strings.Join(g.allowed(path), ","); got != want {
			t.Errorf("allowed(%s) = %q, want %q", path, got, want)
		}
	}
	list, ok := g.find("GET", "/v1/audit/events")
	if !ok || list.body {
		t.Fatal("no GET /v1/audit/events")
	}
	for _, q := range []string{"subject", "caller", "source_domain", "sourceDomain", "target_domain", "outcome", "start_time",
		"startTime", "end_time", "page_size", "pageSize", "page_token", "pageToken"} {
		if !list.query[q] {
			t.Errorf("query parameter %s not accepted", q)
		}
	}
	if list.query["subjet"] || !slices.Contains(list.names, "page_size") {
		t.Errorf("query names %v", list.names)
	}
	if chain, ok := g.find("POST", "/v1/chain"); !ok || !chain.body {
		t.Error("POST /v1/chain takes no body")
	}
}

// Decoding errors name the field in its proto spelling and echo no value.
func TestDescribeDecodeError(t *testing.T) {
	for _, tt := range []struct{ in, field, msg string }{
		{`proto: (line 1:2): unknown field "bogus"`, "bogus", `request body: unknown field "bogus" (line 1:2)`},
		{`proto: (line 1:2): duplicate field "subject_token"`, "subject_token", `duplicate field`},
		{`proto: (line 1:17): invalid value for string field subjectToken: "eyJsecret"`, "subject_token", "subject_token: invalid value, want a string (line 1:17)"},
		{`proto: syntax error (line 1:40): unexpected token "eyJsecret"`, "", "unexpected value (line 1:40)"},
		{`parsing field "page_size": strconv.ParseInt: parsing "eyJsecret": invalid syntax`, "page_size", "page_size: invalid value"},
		{`invalid character 'x' looking for beginning of value`, "", "not valid JSON: invalid character 'x'"},
		{`something else entirely: eyJsecret`, "", "could not be decoded"},
		{`proto: (line 1:2): unknown field "` + strings.Repeat("é", 500) + `"`, strings.Repeat("?", 64) + "…", "unknown field"},
	} {
		field, msg := describeDecodeError(tt.in)
		if field != tt.field || !strings.Contains(msg, tt.msg) || strings.Contains(msg, "eyJsecret") {
			t.Errorf("describeDecodeError(%.60q) = %q, %q; want %q, ~%q", tt.in, field, msg, tt.field, tt.msg)
		}
	}
}
