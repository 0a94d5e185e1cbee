package app_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/sandbox"
)

// The README's quick start and "Try a failure" blocks, run against a
// sandbox and a broker started here: every call answers what the README
// says (a token for a call without a reason comment, the reason in the
// comment otherwise). `sleep` waits until the token has expired: the
// sandbox's tokens live a few seconds here instead of 5 minutes.
func TestReadmeCommands(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[string]string{
		"quick start":   shBlockAfter(t, string(readme), "In another terminal"),
		"try a failure": shBlockAfter(t, string(readme), "Try a failure."),
	}
	const lifetime = 15 * time.Second
	e := apptest.StartWith(t, apptest.Options{SandboxOptions: sandbox.Options{TokenLifetime: lifetime}})
	// The README's addresses are the sandbox's defaults.
	hosts := map[string]string{
		"http://" + sandbox.DefaultAAddr: strings.TrimSuffix(e.Sandbox.A.Issuer(), "/realms/"+sandbox.DomainAName),
		"http://127.0.0.1:8080":          e.HTTPURL,
	}

	for _, name := range []string{"quick start", "try a failure"} {
		t.Run(name, func(t *testing.T) {
			r := readmeRun{t: t, hosts: hosts, vars: map[string]string{}}
			calls := 0
			for _, c := range shCommands(blocks[name]) {
				switch {
				case c.sleep:
					r.waitTokenExpired()
				case c.assign != "":
					r.vars[c.assign] = r.fetchToken(c.args)
				case c.curlChain:
					calls++
					r.chain(c)
				default:
					t.Fatalf("the test does not know how to run %q", c.text)
				}
			}
			if calls == 0 {
				t.Fatal("no chain call found in the block")
			}
		})
	}
}

// shBlockAfter returns the first ```sh block after the paragraph that
// contains marker.
func shBlockAfter(t *testing.T, doc, marker string) string {
	t.Helper()
	i := strings.Index(doc, marker)
	if i < 0 {
		t.Fatalf("README has no %q", marker)
	}
	rest := doc[i:]
	j := strings.Index(rest, "```sh\n")
	if j < 0 {
		t.Fatalf("no sh block after %q", marker)
	}
	rest = rest[j+len("```sh\n"):]
	k := strings.Index(rest, "```")
	if k < 0 {
		t.Fatalf("unterminated sh block after %q", marker)
	}
	return rest[:k]
}

// shCommand is one command of a block, continuation lines joined.
type shCommand struct {
	text      string
	reason    string // from the comment above: "# REASON: ..."
	args      []string
	assign    string // VAR=$(...)
	sleep     bool
	curlChain bool
}

var reasonComment = regexp.MustCompile(`^# ([A-Z][A-Z0-9_]+):`)

func shCommands(block string) []shCommand {
	var out []shCommand
	reason, cur := "", ""
	for line := range strings.SplitSeq(block, "\n") {
		line = strings.TrimSpace(line)
		if cur == "" {
			if m := reasonComment.FindStringSubmatch(line); m != nil {
				reason = m[1]
				continue
			}
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
		}
		if strings.HasSuffix(line, `\`) {
			cur += strings.TrimSuffix(line, `\`) + " "
			continue
		}
		cur += line
		// A trailing comment is not part of the command.
		if i := strings.Index(cur, "   #"); i >= 0 {
			cur = strings.TrimSpace(cur[:i])
		}
		c := shCommand{text: cur, reason: reason, args: shWords(cur)}
		switch {
		case strings.HasPrefix(cur, "sleep "):
			c.sleep = true
		case regexp.MustCompile(`^[A-Z_]+=\$\(`).MatchString(cur):
			c.assign = cur[:strings.Index(cur, "=")]
		case strings.HasPrefix(cur, "curl ") && strings.Contains(cur, "/v1/chain"):
			c.curlChain = true
		}
		out = append(out, c)
		cur = ""
		if !c.sleep { // "# REASON: ..." above `sleep` is about the call after it
			reason = ""
		}
	}
	return out
}

// shWords splits a command into words as sh would, keeping $TOKEN and
// ${TOKEN%.*} for readmeRun.expand; single-quoted text is literal.
func shWords(s string) []string {
	var words []string
	var w strings.Builder
	in := byte(0)
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case in == '\'':
			if c == '\'' {
				in = 0
			} else {
				w.WriteByte(c)
			}
		case in == '"':
			switch {
			case c == '"':
				in = 0
			case c == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0:
				i++
				w.WriteByte(s[i])
			default:
				w.WriteByte(c)
			}
		case c == '\'' || c == '"':
			in, inWord = c, true
		case c == ' ':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

type readmeRun struct {
	t     *testing.T
	hosts map[string]string
	vars  map[string]string
}

// expand substitutes $VAR and ${VAR%.*} (the value up to its last dot).
func (r *readmeRun) expand(s string) string {
	for name, v := range r.vars {
		cut := v
		if i := strings.LastIndex(v, "."); i >= 0 {
			cut = v[:i]
		}
		s = strings.ReplaceAll(s, "${"+name+"%.*}", cut)
		s = strings.ReplaceAll(s, "${"+name+"}", v)
		s = strings.ReplaceAll(s, "$"+name, v)
	}
	if strings.Contains(s, "$") {
		r.t.Fatalf("unexpanded variable in %q", s)
	}
	return s
}

// rewrite maps the README's default addresses to this test's.
func (r *readmeRun) rewrite(u string) string {
	for from, to := range r.hosts {
		if strings.HasPrefix(u, from+"/") {
			return to + strings.TrimPrefix(u, from)
		}
	}
	r.t.Fatalf("URL %q is not one of the sandbox's default addresses", u)
	return ""
}

// curlRequest reads curl's URL and -d values from args.
func (r *readmeRun) curlRequest(args []string) (string, []string) {
	var target string
	var data []string
	for i := 1; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-d" && i+1 < len(args):
			i++
			data = append(data, r.expand(args[i]))
		case a == "-X" && i+1 < len(args):
			i++
		case strings.HasPrefix(a, "http"):
			target = r.rewrite(a)
		case a == "|":
			return target, data
		}
	}
	return target, data
}

// fetchToken runs TOKEN=$(curl ... | sed ...): a password grant at domain A.
func (r *readmeRun) fetchToken(args []string) string {
	if len(args) == 0 || !strings.HasPrefix(args[0], "TOKEN=$(curl") {
		r.t.Fatalf("unexpected assignment %q", args)
	}
	target, data := r.curlRequest(append([]string{"curl"}, args[1:]...))
	form := url.Values{}
	for _, d := range data {
		k, v, _ := strings.Cut(d, "=")
		form.Add(k, v)
	}
	resp, err := http.PostForm(target, form)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.AccessToken == "" {
		r.t.Fatalf("no token from %s (%d): %v", target, resp.StatusCode, err)
	}
	return body.AccessToken
}

// chain runs curl -X POST .../v1/chain -d JSON and checks the answer.
func (r *readmeRun) chain(c shCommand) {
	target, data := r.curlRequest(c.args)
	if len(data) != 1 {
		r.t.Fatalf("%q: want one -d body", c.text)
	}
	resp, err := http.Post(target, "application/json", strings.NewReader(data[0]))
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var body struct {
		AccessToken string `json:"access_token"`
		Details     []struct {
			Reason string `json:"reason"`
		} `json:"details"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		r.t.Fatalf("%q: %v: %s", c.text, err, b)
	}
	got := ""
	if len(body.Details) > 0 {
		got = body.Details[0].Reason
	}
	switch {
	case c.reason == "" && body.AccessToken == "":
		r.t.Errorf("%q: the README shows a token, the broker answered %d %s", c.text, resp.StatusCode, b)
	case c.reason != "" && got != c.reason:
		r.t.Errorf("%q: the README shows %s, the broker answered %d %s", c.text, c.reason, resp.StatusCode, b)
	}
}

// waitTokenExpired stands for `sleep 300`: it waits until every token
// fetched so far is past its exp.
func (r *readmeRun) waitTokenExpired() {
	for _, v := range r.vars {
		parts := strings.Split(v, ".")
		if len(parts) != 3 {
			r.t.Fatalf("not a JWT: %q", v)
		}
		payload, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			r.t.Fatal(err)
		}
		var claims struct {
			Exp int64 `json:"exp"`
		}
		if err := json.Unmarshal(payload, &claims); err != nil || claims.Exp == 0 {
			r.t.Fatalf("no exp in %s: %v", payload, err)
		}
		for time.Now().Unix() <= claims.Exp {
			time.Sleep(200 * time.Millisecond)
		}
	}
}
