package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
)

const chainUsage = `Usage:
  chainctl chain --target DOMAIN [flags]

Chains a subject token issued by the source domain into the target domain
(token exchange at the source, JWT authorization grant at the target) and
prints the target's access token.

The subject token is read from --subject-token, from --subject-token-file, or
from stdin when neither is given or the value is "-". Prefer the file or stdin:
a token on the command line is visible to other local users and lands in the
shell history. Surrounding whitespace is ignored.

Flags:
  --target DOMAIN              target domain name (required)
  --source DOMAIN              source domain name (default: the domain whose issuer is the token's iss)
  --scope SCOPE                scope to request in the target domain; repeatable, or space-separated
  --resource URI               RFC 8707 resource indicator for the token exchange; repeatable
  --audience AUD               audience for the token exchange (default: the chain's configured one)
  --subject-token TOKEN        the subject token ("-": stdin)
  --subject-token-file FILE    file holding the subject token ("-": stdin)
  --subject-token-type URI     RFC 8693 type of the subject token (default: the source domain's)
  --actor-token-file FILE      file holding an RFC 8693 actor token, for delegation ("-": stdin)
  --actor-token-type URI       RFC 8693 type of the actor token (required with --actor-token-file)
  --token-only                 print only the access token and a newline (whatever -o says)

Output:
  table  token type, issued token type, expires_in, scope, audit id, the hops
         with their durations, then the access token alone on the last line
  json   the ChainResponse: chainctl chain ... -o json | jq -r .access_token

Examples:
  chainctl chain --target domain-b --subject-token-file alice.jwt
  TOKEN=$(chainctl chain --target domain-b --token-only < alice.jwt)
  chainctl chain --target domain-b --scope profile --scope email -o json < alice.jwt

Global flags: see "chainctl -h".
`

// maxTokenInput bounds a token read from a file or stdin (the broker accepts
// 16 KiB by default, and 64 KiB gRPC messages).
const maxTokenInput = 64 << 10

func (c *cli) chain(args []string) error {
	var (
		req                                  pb.ChainRequest
		scopes, resources                    stringList
		subjectToken, subjectFile, actorFile string
		tokenOnly                            bool
	)
	fs := newFlagSet("chain")
	fs.StringVar(&req.TargetDomain, "target", "", "")
	fs.StringVar(&req.SourceDomain, "source", "", "")
	fs.Var(&scopes, "scope", "")
	fs.Var(&resources, "resource", "")
	fs.StringVar(&req.Audience, "audience", "", "")
	fs.StringVar(&subjectToken, "subject-token", "", "")
	fs.StringVar(&subjectFile, "subject-token-file", "", "")
	fs.StringVar(&req.SubjectTokenType, "subject-token-type", "", "")
	fs.StringVar(&actorFile, "actor-token-file", "", "")
	fs.StringVar(&req.ActorTokenType, "actor-token-type", "", "")
	fs.BoolVar(&tokenOnly, "token-only", false, "")
	rest, err := c.parseCommand(fs, "chain", args)
	c.secret(subjectToken) // redacted from any error below
	if err != nil {
		return err
	}
	switch {
	case len(rest) > 0:
		// Not echoed: a misplaced argument may be a token.
		return usageErrorf("chain: takes no positional arguments (got %d)", len(rest))
	case req.TargetDomain == "":
		return usageErrorf("chain: --target is required")
	case subjectToken != "" && subjectFile != "":
		return usageErrorf("chain: give --subject-token or --subject-token-file, not both")
	case actorFile != "" && req.ActorTokenType == "":
		return usageErrorf("chain: --actor-token-type is required with --actor-token-file")
	case actorFile == "" && req.ActorTokenType != "":
		return usageErrorf("chain: --actor-token-type needs --actor-token-file")
	}
	subjectFromStdin := subjectToken == "-" || subjectFile == "-" || (subjectToken == "" && subjectFile == "")
	if subjectFromStdin && actorFile == "-" {
		return usageErrorf("chain: the subject token and the actor token cannot both come from stdin")
	}

	switch {
	case subjectFromStdin:
		req.SubjectToken, err = c.readToken("stdin", "subject token")
	case subjectFile != "":
		req.SubjectToken, err = c.readToken(subjectFile, "subject token")
	default:
		req.SubjectToken = strings.TrimSpace(subjectToken)
	}
	c.secret(req.SubjectToken)
	if err != nil {
		return err
	}
	if req.SubjectToken == "" {
		return usageErrorf("chain: the subject token is empty")
	}
	if actorFile != "" {
		source := actorFile
		if actorFile == "-" {
			source = "stdin"
		}
		if req.ActorToken, err = c.readToken(source, "actor token"); err != nil {
			return err
		}
		c.secret(req.ActorToken)
		if req.ActorToken == "" {
			return usageErrorf("chain: the actor token is empty")
		}
	}
	req.Scope, req.Resource = scopes, resources

	conn, err := c.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := c.withTimeout()
	defer cancel()
	resp, err := pb.NewChainServiceClient(conn).Chain(ctx, &req)
	if err != nil {
		return err
	}
	switch {
	case tokenOnly:
		_, err = fmt.Fprintln(c.stdout, resp.GetAccessToken())
		return err
	case c.json():
		return printJSON(c.stdout, resp)
	}
	return printChain(c.stdout, resp)
}

// readToken reads a token from a file or, for source "stdin", from stdin.
func (c *cli) readToken(source, what string) (string, error) {
	var r io.Reader
	if source == "stdin" {
		// Prompt a person only: a terminal, not any character device
		// (/dev/null is one) nor a pipe or file.
		if f, ok := c.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			fmt.Fprintf(c.stderr, "chainctl: reading the %s from stdin (end with Ctrl-D)\n", what)
		}
		if c.stdin == nil {
			return "", usageErrorf("chain: no %s given and no stdin", what)
		}
		r = c.stdin
	} else {
		f, err := os.Open(source)
		if err != nil {
			return "", usageErrorf("chain: %s: %v", what, err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxTokenInput+1))
	if err != nil {
		return "", usageErrorf("chain: reading the %s from %s: %v", what, source, err)
	}
	if len(b) > maxTokenInput {
		return "", usageErrorf("chain: the %s from %s is larger than %d bytes", what, source, maxTokenInput)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", usageErrorf("chain: no %s on %s", what, source)
	}
	return tok, nil
}

// printChain writes a ChainResponse for people; the access token comes last,
// alone on its line.
func printChain(w io.Writer, resp *pb.ChainResponse) error {
	t := newTable(w)
	t.row("TOKEN TYPE", resp.GetTokenType())
	t.row("ISSUED TOKEN TYPE", resp.GetIssuedTokenType())
	expires := ""
	if resp.GetExpiresIn() > 0 {
		expires = fmt.Sprintf("%ds", resp.GetExpiresIn())
	}
	t.row("EXPIRES IN", expires)
	t.row("SCOPE", resp.GetScope())
	t.row("AUDIT ID", resp.GetAuditId())
	if err := t.flush(); err != nil {
		return err
	}
	if len(resp.GetHops()) > 0 {
		fmt.Fprintln(w)
		if err := printHops(w, resp.GetHops()); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "\nACCESS TOKEN\n%s\n", resp.GetAccessToken())
	return err
}
