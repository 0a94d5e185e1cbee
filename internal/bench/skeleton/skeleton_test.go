package skeleton

import (
	"net"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/chainbroker/chainbroker/auth"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/internal/bench/load"
	"github.com/chainbroker/chainbroker/internal/redistest"
	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/sandbox"
	"github.com/chainbroker/chainbroker/store"
	redisstore "github.com/chainbroker/chainbroker/store/redis"
	"github.com/chainbroker/chainbroker/token"
)

// The skeleton chains against the real sandbox and a real redis-server,
// writes its marker and audit event (in each audit mode), and refuses a
// grant it cannot verify.
func TestSkeletonChains(t *testing.T) {
	sb := apptest.StartSandbox(t, sandbox.Options{})
	subject := apptest.SubjectToken(t, sb, sandbox.Alice)
	for _, mode := range []string{AuditIndexed, AuditFixed} {
		t.Run(mode, func(t *testing.T) {
			ctx := t.Context()
			srv := redistest.New(t, redistest.Options{})
			rdb := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
			t.Cleanup(func() { _ = rdb.Close() })
			var st *redisstore.Store
			if mode == AuditIndexed {
				var err error
				st, err = redisstore.NewUniversal(&goredis.UniversalOptions{Addrs: []string{srv.Addr()}}, redisstore.Options{KeyPrefix: "skeleton"})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = st.Close() })
			}
			serve := func(jwks string, cache bool) pb.ChainServiceClient {
				s := &skeleton{
					hops: &load.Baseline{Client: load.NewHTTPClient(4), AToken: sb.A.TokenEndpoint(), BToken: sb.B.TokenEndpoint(),
						Audience: sb.B.Issuer(), ClientID: sandbox.BrokerClientID, ASecret: sandbox.BrokerSecretA, BSecret: sandbox.BrokerSecretB},
					keys:   token.NewRemoteVerifier(token.RemoteKeys{URL: jwks, Timeout: 2 * time.Second}, []string{"RS256"}),
					redis:  rdb,
					store:  st,
					cache:  cache,
					tokens: map[[32]byte]skeletonToken{},
					caller: auth.Anonymous, source: sandbox.DomainAName,
				}
				lis, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				g := grpc.NewServer()
				pb.RegisterChainServiceServer(g, s)
				go func() { _ = g.Serve(lis) }()
				t.Cleanup(g.Stop)
				conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = conn.Close() })
				return pb.NewChainServiceClient(conn)
			}
			// events checks the audit trail: the outcomes, newest first.
			events := func(want ...store.Outcome) {
				t.Helper()
				if st == nil {
					if n, err := rdb.XLen(ctx, "skeleton:audit").Result(); err != nil || n != int64(len(want)) {
						t.Errorf("audit records: %d, %v; want %d", n, err, len(want))
					}
					return
				}
				// Through the caller's index: the events are indexed.
				evs, _, err := st.List(ctx, store.Filter{Caller: auth.Anonymous}, 10, "")
				if err != nil {
					t.Fatal(err)
				}
				if len(evs) != len(want) {
					t.Fatalf("audit events: %d, want %d", len(evs), len(want))
				}
				for i, e := range evs {
					if e.Outcome != want[i] || e.Caller != auth.Anonymous || e.SourceDomain != sandbox.DomainAName ||
						e.Subject == "" || e.SubjectTokenHash == "" || !e.SubjectVerified {
						t.Errorf("event %d: %+v; want outcome %v with caller, source, subject token hash", i, e, want[i])
					}
					if hops := len(e.Hops); (e.Outcome == store.OutcomeSuccess) != (hops == 2 && e.AssertionJTIHash != "" && e.AssertionIssuer != "") {
						t.Errorf("event %d: %v with %d hops, jti hash %q, issuer %q", i, e.Outcome, hops, e.AssertionJTIHash, e.AssertionIssuer)
					}
				}
			}
			markers := func(want int) {
				t.Helper()
				pattern := "skeleton:replay:*"
				if keys, err := rdb.Keys(ctx, pattern).Result(); err != nil || len(keys) != want {
					t.Errorf("replay markers: %v, %v; want %d", keys, err, want)
				}
			}

			resp, err := serve(sb.A.JWKSURI(), false).Chain(ctx, &pb.ChainRequest{SubjectToken: subject, TargetDomain: sandbox.DomainBName})
			if err != nil || resp.GetAccessToken() == "" {
				t.Fatalf("Chain: %v, %v", resp, err)
			}
			events(store.OutcomeSuccess)
			markers(1)
			answers(t, resp, 2)

			// With the cache: the first chain is a miss (a second marker), the next
			// a hit answered from memory with B's token and one more audit event.
			cached := serve(sb.A.JWKSURI(), true)
			miss, err := cached.Chain(ctx, &pb.ChainRequest{SubjectToken: subject, TargetDomain: sandbox.DomainBName})
			if err != nil || miss.GetAccessToken() == "" {
				t.Fatalf("Chain (miss): %v, %v", miss, err)
			}
			hit, err := cached.Chain(ctx, &pb.ChainRequest{SubjectToken: subject, TargetDomain: sandbox.DomainBName})
			if err != nil || hit.GetAccessToken() != miss.GetAccessToken() || hit.GetExpiresIn() <= 0 {
				t.Fatalf("Chain (hit): %v, %v; want the miss's token with a lifetime", hit, err)
			}
			events(store.OutcomeCacheHit, store.OutcomeSuccess, store.OutcomeSuccess)
			markers(2)
			answers(t, miss, 2)
			answers(t, hit, 0)
			if hit.GetAuditId() == miss.GetAuditId() || hit.GetScope() != miss.GetScope() || hit.GetTokenType() != miss.GetTokenType() {
				t.Errorf("hit %v vs miss %v: want its own audit id, the miss's scope and token type", hit, miss)
			}
			// Another target is another key: a miss.
			if _, err := cached.Chain(ctx, &pb.ChainRequest{SubjectToken: subject, TargetDomain: "other"}); err != nil {
				t.Fatal(err)
			}
			markers(3)

			// B's keys do not verify A's grant: refused before hop 2.
			_, err = serve(sb.B.JWKSURI(), false).Chain(ctx, &pb.ChainRequest{SubjectToken: subject, TargetDomain: sandbox.DomainBName})
			if status.Code(err) != codes.PermissionDenied {
				t.Errorf("grant checked with the wrong keys: %v, want PermissionDenied", err)
			}
			markers(3)
		})
	}
}

// answers checks that an answer is the design's API's: B's token with its
// type, lifetime and scope, an audit id, the profile, and the hops taken
// (domain, endpoint, grant type, duration, the grant's jti hash).
func answers(t *testing.T, resp *pb.ChainResponse, hops int) {
	t.Helper()
	if resp.GetAccessToken() == "" || resp.GetTokenType() != "Bearer" || resp.GetExpiresIn() <= 0 || resp.GetAuditId() == "" ||
		resp.GetIssuedTokenType() != oauth.TokenTypeAccessToken || resp.GetProfile() != profile {
		t.Errorf("answer %v: want B's token, Bearer, a lifetime, an audit id, the access token type and profile %s", resp, profile)
	}
	if len(resp.GetHops()) != hops {
		t.Fatalf("answer's hops: %v, want %d", resp.GetHops(), hops)
	}
	grants := []string{oauth.GrantTypeTokenExchange, oauth.GrantTypeJWTBearer}
	for i, h := range resp.GetHops() {
		if h.GetDomain() == "" || h.GetEndpoint() == "" || h.GetGrantType() != grants[i] || h.GetDuration().AsDuration() <= 0 ||
			len(h.GetAssertionJtiHash()) != 64 || h.GetAssertionJtiHash() != resp.GetHops()[0].GetAssertionJtiHash() {
			t.Errorf("hop %d: %v; want domain, endpoint, grant type %s, a duration and the grant's jti hash", i, h, grants[i])
		}
	}
}
