package main

import (
	"fmt"
	"io"
	"strings"

	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
)

const domainsUsage = `Usage:
  chainctl domains [flags]

Lists the broker's configured domains (issuer, token endpoint, JWKS URI, the
broker's client at each) and the chains the caller may use. No secret is
ever returned.

Output:
  table  two tables: DOMAINS and CHAINS
  json   the ListDomainsResponse

Global flags: see "chainctl -h".
`

func (c *cli) domains(args []string) error {
	fs := newFlagSet("domains")
	rest, err := c.parseCommand(fs, "domains", args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usageErrorf("domains: unexpected argument %q", rest[0])
	}
	conn, err := c.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := c.withTimeout()
	defer cancel()
	resp, err := pb.NewChainServiceClient(conn).ListDomains(ctx, &pb.ListDomainsRequest{})
	if err != nil {
		return err
	}
	if c.json() {
		return printJSON(c.stdout, resp)
	}
	return printDomains(c.stdout, resp)
}

func printDomains(w io.Writer, resp *pb.ListDomainsResponse) error {
	fmt.Fprintln(w, "DOMAINS")
	t := newTable(w)
	t.row("NAME", "ISSUER", "TOKEN ENDPOINT", "JWKS URI", "CLIENT ID", "CLIENT AUTH")
	for _, d := range resp.GetDomains() {
		t.row(d.GetName(), d.GetIssuer(), d.GetTokenEndpoint(), d.GetJwksUri(), d.GetClientId(), d.GetClientAuthMethod())
	}
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nCHAINS")
	t = newTable(w)
	t.row("SOURCE", "TARGET", "AUDIENCE", "DEFAULT SCOPES")
	for _, ch := range resp.GetChains() {
		t.row(ch.GetSourceDomain(), ch.GetTargetDomain(), ch.GetAudience(), strings.Join(ch.GetDefaultScopes(), " "))
	}
	return t.flush()
}
