package bench

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/broker"
	"github.com/chainbroker/chainbroker/config"
	"github.com/chainbroker/chainbroker/internal/app"
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/internal/bench/load"
	"github.com/chainbroker/chainbroker/internal/bench/measure"
	"github.com/chainbroker/chainbroker/internal/bench/skeleton"
	"github.com/chainbroker/chainbroker/sandbox"
)

// The configurations chainbench generates must stay valid as the
// configuration schema evolves: a broken one only shows in a benchmark run.
func TestBrokerConfigIsValid(t *testing.T) {
	for _, tt := range []struct {
		name   string
		o      options
		cache  bool
		secret bool
		cloud  bool // the domains child runs the cloud imitations
	}{
		{"redis anonymous", options{store: "redis", caller: "anonymous"}, false, false, false},
		{"memory apikey verify", options{store: "memory", caller: "apikey", verifySubjectToken: true}, false, false, false},
		{"redis cache", options{store: "redis", caller: "anonymous"}, true, true, false},
		{"redis cloud", options{store: "redis", caller: "anonymous", cloud: true}, false, false, true},
		{"memory apikey cloud cache", options{store: "memory", caller: "apikey", cloud: true}, true, true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := &bench{o: &tt.o, redisAddr: "127.0.0.1:6399", apiKey: "k", cacheKey: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
				info: domainsInfo{
					A: app.SandboxDomain{Name: "domain-a", Issuer: "http://127.0.0.1:1/realms/domain-a",
						TokenEndpoint: "http://127.0.0.1:1/realms/domain-a/protocol/openid-connect/token",
						JWKSURI:       "http://127.0.0.1:1/realms/domain-a/protocol/openid-connect/certs"},
					B: app.SandboxDomain{Name: "domain-b", Issuer: "http://127.0.0.1:2/realms/domain-b",
						TokenEndpoint: "http://127.0.0.1:2/realms/domain-b/protocol/openid-connect/token",
						JWKSURI:       "http://127.0.0.1:2/realms/domain-b/protocol/openid-connect/certs"},
					C: app.SandboxDomain{Name: "domain-c", Issuer: "http://127.0.0.1:5/realms/domain-c",
						TokenEndpoint: "http://127.0.0.1:5/realms/domain-c/protocol/openid-connect/token",
						JWKSURI:       "http://127.0.0.1:5/realms/domain-c/protocol/openid-connect/certs"},
				}}
			if tt.cloud {
				b.info.Cloud = &app.SandboxCloud{URL: "http://127.0.0.1:6", AWSEndpoint: "http://127.0.0.1:6/aws/",
					AzureTokenEndpoint:        "http://127.0.0.1:6/azure/" + sandbox.AzureTenantID + "/oauth2/v2.0/token",
					GCPSTSEndpoint:            "http://127.0.0.1:6/gcp/v1/token",
					GCPIAMCredentialsEndpoint: "http://127.0.0.1:6/gcp/iamcredentials"}
			}
			text := b.brokerConfig(brokerAddrs{grpc: "127.0.0.1:3", http: "127.0.0.1:4"}, tt.cache)
			f, err := config.Parse([]byte(text))
			if err != nil {
				t.Fatalf("%v\n%s", err, text)
			}
			if err := f.Validate(); err != nil {
				t.Fatalf("%v\n%s", err, text)
			}
			if got := f.Domain("domain-b").Cache.Enabled; got != tt.cache {
				t.Errorf("domain-b cache enabled = %v", got)
			}
			if c := f.Chains[1]; c.Target != "domain-c" || c.Profile != "id_jag" {
				t.Errorf("chains[1] = %+v, want the ID-JAG chain to domain-c", c)
			}
			if got := f.Store.Backend; got != tt.o.store {
				t.Errorf("store = %q", got)
			}
			// The cloud runs' targets: a domain of each cloud kind, a chain
			// from domain-a with the cloud's audience, allowed to the
			// load generator.
			for _, ct := range cloudTargets() {
				d := f.Domain(ct.domain)
				if !tt.cloud {
					if d != nil {
						t.Errorf("domain %s without cloud imitations", ct.domain)
					}
					continue
				}
				kinds := map[string]broker.TargetKind{app.SandboxAWSTarget: broker.KindAWS, app.SandboxGCPTarget: broker.KindGCP,
					app.SandboxAzureTarget: broker.KindAzure}
				if d == nil || d.Kind != string(kinds[ct.domain]) || !strings.HasPrefix(d.TokenEndpoint, "http://127.0.0.1:6/") {
					t.Errorf("domain %s = %+v", ct.domain, d)
				}
				if !slices.ContainsFunc(f.Chains, func(c config.Chain) bool {
					return c.Source == "domain-a" && c.Target == ct.domain && c.Audience != ""
				}) {
					t.Errorf("no chain domain-a -> %s with an audience: %+v", ct.domain, f.Chains)
				}
				if !slices.ContainsFunc(f.Policy[0].Chains, func(c config.PolicyChain) bool { return c.Target == ct.domain }) {
					t.Errorf("policy %+v does not allow the chain to %s", f.Policy[0], ct.domain)
				}
			}
		})
	}
}

func TestParsePprofOutput(t *testing.T) {
	out := `File: chainbench
Type: cpu
Duration: 10.04s, Total samples = 2680ms (26.70%)
Active filters:
   focus=broker\.\(\*chainRun\)\.validate$
Showing nodes accounting for 310ms, 11.57% of 2680ms total
      flat  flat%   sum%        cum   cum%
     0.61s 22.76% 22.76%      0.61s 22.76%  internal/runtime/syscall/linux.Syscall6
         0     0% 22.76%      1.13s 42.16%  github.com/chainbroker/chainbroker/broker.(*Broker).Chain
`
	hdr, rows := parseTop(out)
	if !strings.HasPrefix(hdr, "Duration: 10.04s") || len(rows) != 2 || rows[1].Name != "github.com/chainbroker/chainbroker/broker.(*Broker).Chain" || rows[0].CumPct != "22.76%" {
		t.Fatalf("header %q, rows %+v", hdr, rows)
	}
	if v, ok := focusedShare(out); !ok || v != 11.57 {
		t.Errorf("focusedShare = %v, %v", v, ok)
	}
}

func TestSkeletonAuditFlag(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		want    string
		wantErr bool
	}{
		{nil, skeleton.AuditIndexed, false},
		{[]string{"--skeleton-audit=fixed"}, skeleton.AuditFixed, false},
		{[]string{"--skeleton-audit", "indexed"}, skeleton.AuditIndexed, false},
		{[]string{"--skeleton-audit=xadd"}, "", true},
	} {
		o, err := parseFlags(tt.args)
		switch {
		case tt.wantErr && (err == nil || !strings.Contains(err.Error(), "--skeleton-audit")):
			t.Errorf("%v: err = %v, want one about --skeleton-audit", tt.args, err)
		case !tt.wantErr && err != nil:
			t.Errorf("%v: %v", tt.args, err)
		case !tt.wantErr && o.skeletonAudit != tt.want:
			t.Errorf("%v: skeleton audit %q, want %q", tt.args, o.skeletonAudit, tt.want)
		}
	}
}

func TestPacedFlags(t *testing.T) {
	for _, tt := range []struct {
		name    string
		args    []string
		rate    float64
		levels  []int
		wantErr string
	}{
		{"defaults", nil, 20000, []int{64, 256}, ""},
		{"quick keeps the paced runs", []string{"--quick"}, 20000, []int{64, 256}, ""},
		{"other rate and levels", []string{"--paced-rate=5000.5", "--paced-levels= 16, 64 ,"}, 5000.5, []int{16, 64}, ""},
		{"rate 0 disables", []string{"--paced-rate", "0"}, 0, nil, ""},
		{"rate 0 ignores the levels", []string{"--paced-rate=0", "--paced-levels=x"}, 0, nil, ""},
		{"no levels", []string{"--paced-levels="}, 20000, nil, ""},
		{"negative rate", []string{"--paced-rate=-1"}, 0, nil, "--paced-rate"},
		{"not a number", []string{"--paced-rate=fast"}, 0, nil, "paced-rate"},
		{"zero callers", []string{"--paced-levels=64,0"}, 0, nil, "--paced-levels"},
		{"not an integer", []string{"--paced-levels=64,x"}, 0, nil, "--paced-levels"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFlags(tt.args) // flag errors print the usage: seen with -v only
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one about %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.pacedRate != tt.rate || !slices.Equal(o.pacedLevels, tt.levels) {
				t.Errorf("paced rate %v levels %v, want %v %v", o.pacedRate, o.pacedLevels, tt.rate, tt.levels)
			}
		})
	}
	// The estimate counts one run per paced level, and the skeleton one
	// more per paced level for its cache hits.
	for _, skeleton := range []string{"--skeleton=false", "--skeleton=true"} {
		with, err1 := parseFlags([]string{"--quick", skeleton})
		without, err2 := parseFlags([]string{"--quick", skeleton, "--paced-rate=0"})
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		runs := time.Duration(2)
		if with.skeleton {
			runs = 4
		}
		if d, want := with.estimate()-without.estimate(), runs*(with.duration+with.warmup+500*time.Millisecond); d != want {
			t.Errorf("%s: estimate difference %v, want %v", skeleton, d, want)
		}
	}
}

// The report goes through fmt via wrappers go vet cannot check.
func TestReportRenders(t *testing.T) {
	o, err := parseFlags([]string{"--quick", "--store=memory"})
	if err != nil {
		t.Fatal(err)
	}
	b := &bench{o: o, floor: measure.Floor{PerOp: 40 * time.Microsecond}, configYAML: "x: 1\n", cacheYAML: "x: 2\n"}
	b.cache = []load.Result{{Target: "grpc+cache", Concurrency: 1, Window: time.Second, Chains: 3000, P99: time.Millisecond}}
	b.cachePaced = []load.Result{{Target: "grpc+cache", Concurrency: 64, Offered: 20000, Window: time.Second, Chains: 19000, P99: 3 * time.Millisecond,
		BrokerCPU: 50 * time.Microsecond}}
	b.skeletonCache = []load.Result{{Target: "skeleton+cache", Concurrency: 64, Offered: 20000, Window: time.Second, Chains: 20000,
		P99: 2 * time.Millisecond, BrokerCPU: 20 * time.Microsecond, TimerLateP99: 900 * time.Microsecond, TimerLateShare: 0.8}}
	rep := b.report()
	text := rep.Markdown() + rep.Summary()
	if i := strings.Index(text, "%!"); i >= 0 {
		t.Errorf("formatting error: %s", text[max(i-80, 0):min(i+40, len(text))])
	}
	for _, want := range []string{"Little's law", "| 64 | open loop, 20000/s offered, 95.0% achieved | 19000 |", "19000/s achieved (95.0%), p99 3.00ms",
		"| 64 | open loop, 20000/s offered, 100.0% achieved | skeleton | 20000 | 0 | 2.00ms | 900µs (80%) | 20.0µs |",
		"| broker | 19000 | 0 | 3.00ms | — | 50.0µs | 0 | 0 | 2.50× |",
		"the skeleton's hits, same load: p99 2.00ms (100.0% achieved)"} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

// The cloud targets chainbench configures are the sandbox's own
// (app.SandboxConfig with the cloud imitations in the same process): the
// demo's configuration, measured from another process.
func TestCloudConfigMatchesSandbox(t *testing.T) {
	sb := apptest.StartSandbox(t, sandbox.Options{CloudAddr: "127.0.0.1:0"})
	want := app.SandboxConfig(sb, "127.0.0.1:3", "127.0.0.1:4", "")
	a, bd, c := app.SandboxDomains(sb)
	got := app.SandboxFile(a, bd, c, "127.0.0.1:3", "127.0.0.1:4", "")
	app.AddSandboxClouds(got, a, app.SandboxCloudOf(sb))
	got.SetDefaults()
	for _, ct := range cloudTargets() {
		g, w := got.Domain(ct.domain), want.Domain(ct.domain)
		if g == nil || w == nil || !reflect.DeepEqual(*g, *w) {
			t.Errorf("domain %s:\n got %+v\nwant %+v", ct.domain, g, w)
		}
	}
	if !reflect.DeepEqual(got.Chains, want.Chains) {
		t.Errorf("chains:\n got %+v\nwant %+v", got.Chains, want.Chains)
	}
	if !reflect.DeepEqual(got.Policy, want.Policy) {
		t.Errorf("policy:\n got %+v\nwant %+v", got.Policy, want.Policy)
	}
	if sb2 := apptest.StartSandbox(t, sandbox.Options{}); app.SandboxCloudOf(sb2) != nil {
		t.Error("cloud info without cloud imitations")
	}
}

// Each cloud run's chain works end to end: the broker, configured from a
// file as `chainbroker serve` is with the cloud targets chainbench adds,
// chains alice's and bob's access tokens into each cloud imitation, and the
// load generator counts the answer (an aws target's is AWS credentials,
// not an access token).
func TestCloudChains(t *testing.T) {
	sb := apptest.StartSandbox(t, sandbox.Options{CloudAddr: "127.0.0.1:0"})
	env := apptest.StartWith(t, apptest.Options{
		ConfigFile: true,
		Sandbox:    sb,
		Mutate: func(f *config.File) {
			a, _, _ := app.SandboxDomains(sb)
			app.AddSandboxClouds(f, a, app.SandboxCloudOf(sb))
		},
	})
	subjects := []string{env.SubjectToken(t, sandbox.Alice), env.SubjectToken(t, sandbox.Bob)}
	for _, ct := range cloudTargets() {
		t.Run(ct.name, func(t *testing.T) {
			g, err := load.NewGRPC(env.GRPCAddr, "", ct.domain, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			for _, s := range subjects {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				err := g.Do(ctx, s)
				cancel()
				if err != nil {
					t.Errorf("chain into %s: %v", ct.domain, err)
				}
			}
		})
	}
}

// --cloud (on by default) adds one closed-loop run per cloud target and
// level, as --idjag adds one per level.
func TestCloudFlag(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want bool
	}{
		{nil, true},
		{[]string{"--quick"}, true},
		{[]string{"--cloud=false"}, false},
		{[]string{"--quick", "--cloud=false", "--levels=1,64"}, false},
	} {
		o, err := parseFlags(tt.args)
		if err != nil {
			t.Fatal(err)
		}
		if o.cloud != tt.want {
			t.Errorf("%v: cloud = %v, want %v", tt.args, o.cloud, tt.want)
		}
	}
	with, err1 := parseFlags([]string{"--quick", "--levels=1,64"})
	without, err2 := parseFlags([]string{"--quick", "--levels=1,64", "--cloud=false"})
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if d, want := with.estimate()-without.estimate(), 2*3*(with.duration+with.warmup+500*time.Millisecond); d != want {
		t.Errorf("estimate difference %v, want %v (three cloud targets at two levels)", d, want)
	}
}
