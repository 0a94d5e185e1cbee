package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/chainbroker/chainbroker/auth"
	"github.com/chainbroker/chainbroker/broker"
	"github.com/chainbroker/chainbroker/config"
	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/server"
	"github.com/chainbroker/chainbroker/store"
	"github.com/chainbroker/chainbroker/telemetry"
	"github.com/chainbroker/chainbroker/token"
)

// DefaultConfigPollInterval is how often WatchConfig reads the
// configuration file when given no interval.
const DefaultConfigPollInterval = time.Second

// Source is the file a configuration was read from, for Options.Source:
// Reload and WatchConfig read it again.
type Source struct {
	Path string
	// Overrides (command-line flags) are applied to every reading, as at
	// start-up, so that they keep winning over the file.
	Overrides []func(*config.File)
	sum       [sha256.Size]byte // of the content the running configuration was parsed from
}

// LoadConfig reads and checks a configuration file with the code of
// `chainbroker config check` (config.ReadFile, config.ParseAndCheck) and
// returns it with its Source.
func LoadConfig(path string, lookupEnv func(string) (string, bool), overrides ...func(*config.File)) (*config.File, *Source, error) {
	b, err := config.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := config.ParseAndCheck(b, lookupEnv, overrides...)
	if err != nil {
		return nil, nil, err
	}
	return cfg, &Source{Path: path, Overrides: overrides, sum: sha256.Sum256(b)}, nil
}

// ReloadError is a refused reload: the running configuration stays.
type ReloadError struct {
	// Problems of an invalid configuration, each by YAML path where it has
	// one (the same text as `chainbroker config check`).
	Problems []string
	// RestartKeys are the restart-only keys (config.RestartOnly) the file
	// changes, by YAML path.
	RestartKeys []string
}

func (e *ReloadError) Error() string {
	if len(e.RestartKeys) > 0 {
		return "configuration reload refused: these keys need a restart: " + strings.Join(e.RestartKeys, ", ")
	}
	return "configuration reload refused: " + strings.Join(e.Problems, "; ")
}

// shared is what every configuration of a process uses: built once, by
// Build, and kept by reloads.
type shared struct {
	client       *oauth.Client
	wrap         func(http.RoundTripper) http.RoundTripper
	env          func(string) (string, bool)
	insecureKeys bool
	store        store.Store // instrumented
	metrics      *telemetry.Metrics
	tracer       trace.TracerProvider // nil: off
	log          *slog.Logger
	issuer       *broker.Issuer // nil without issuer.url; its keys reload in place
}

// generation is one configuration's runtime: what a reload replaces.
type generation struct {
	cfg       *config.File
	broker    *broker.Broker
	auth      *auth.Authenticator
	rateLimit server.RateLimit
	readiness []server.Check
	// domains as built (discovered endpoints, verifiers), before the
	// broker's defaults, in configuration order; caSums are the digests of
	// the CA files they were built with, by file name.
	domains []broker.Domain
	caSums  map[string][sha256.Size]byte
	kept    []string        // domains taken over from the previous generation
	jwtKeys *token.Verifier // callers.jwt's verifier; nil without
}

func (g *generation) runtime() server.Runtime {
	return server.Runtime{Broker: g.broker, Auth: g.auth, RateLimit: g.rateLimit, Readiness: g.readiness}
}

// buildGeneration builds the broker, the authenticator, the rate limit and
// the readiness checks of cfg: at start-up (prev nil) and on a reload. A
// domain whose entry did not change since prev (nor its CA file) keeps its
// discovered endpoints, its JWKS verifier (key cache) and its circuit
// breaker; so does callers.jwt its verifier.
func buildGeneration(ctx context.Context, cfg *config.File, sh *shared, prev *generation) (*generation, error) {
	g := &generation{cfg: cfg, caSums: caSums(cfg)}
	keep := g.unchangedDomains(prev)
	domains, err := buildDomainsKeeping(ctx, cfg, sh.client, sh.wrap, sh.env, sh.insecureKeys, keep)
	if err != nil {
		return nil, err
	}
	g.domains = domains
	chains := make([]broker.Chain, 0, len(cfg.Chains))
	for _, c := range cfg.Chains {
		chains = append(chains, broker.Chain{
			Source: c.Source, Target: c.Target, Audience: c.Audience, Resource: c.Resource,
			ExchangeScopes: c.ExchangeScopes, DefaultScopes: c.DefaultScopes,
			Mode: c.Mode, Profile: c.Profile, AssertionLifetime: c.AssertionLifetime.D(), SubjectAudience: c.SubjectAudience,
			SubjectTokenTyp: c.SubjectTokenTyp,
			Transcription: broker.Transcription{
				SubjectClaim: c.Transcription.SubjectClaim, SubjectMap: c.Transcription.SubjectMap,
				Claims: c.Transcription.Claims, Act: c.Transcription.Act, Compute: c.Transcription.Compute,
			},
		})
	}
	cacheKeys, err := buildCacheKeys(cfg.Cache, sh.env)
	if err != nil {
		return nil, err
	}
	bc := broker.Config{
		Issuer:    sh.issuer,
		CacheKeys: cacheKeys,
		Domains:   domains,
		Chains:    chains,
		Endpoint:  sh.client,
		Replay:    sh.store,
		Audit:     sh.store,
		Policy:    buildPolicy(cfg.Policy),
		Observer:  sh.metrics,
		Tracer:    sh.tracer,
		Cache:     sh.store,
		Limits: broker.Limits{
			MaxTokenBytes: cfg.Limits.MaxTokenBytes,
			MaxScopes:     cfg.Limits.MaxScopes,
			MaxResources:  cfg.Limits.MaxResources,
		},
		Logger: sh.log,
	}
	if prev != nil {
		g.kept = slices.Sorted(maps.Keys(keep))
		bc.Previous, bc.Unchanged = prev.broker, g.kept
	}
	if g.broker, err = broker.New(bc); err != nil {
		return nil, err
	}
	var jwtKeys *token.Verifier
	if prev != nil && reflect.DeepEqual(prev.cfg.Callers.JWT, cfg.Callers.JWT) && sameFile(prev, g, caFileOf(cfg.Callers.JWT)) {
		jwtKeys = prev.jwtKeys
	}
	if g.auth, g.jwtKeys, err = buildAuth(cfg.Callers, jwtKeys); err != nil {
		return nil, err
	}
	g.rateLimit = server.RateLimit{Rate: cfg.RateLimit.RequestsPerSecond, Burst: cfg.RateLimit.Burst}
	g.readiness = readiness(sh.store, domains)
	return g, nil
}

// unchangedDomains are the domains of prev, as built, whose configuration
// entry is the same in g (and their CA file too): built again, they would
// only lose their discovered endpoints, JWKS and circuit state.
func (g *generation) unchangedDomains(prev *generation) map[string]broker.Domain {
	keep := map[string]broker.Domain{}
	if prev == nil {
		return keep
	}
	for _, d := range g.cfg.Domains {
		old := prev.cfg.Domain(d.Name)
		if old == nil || !reflect.DeepEqual(*old, d) || !sameFile(prev, g, d.CAFile) {
			continue
		}
		for _, built := range prev.domains {
			if built.Name == d.Name {
				keep[d.Name] = built
			}
		}
	}
	return keep
}

func caFileOf(j *config.CallerJWT) string {
	if j == nil {
		return ""
	}
	return j.CAFile
}

// caSums are the digests of the CA files cfg names (read before the
// domains are built: a file changed in between reads as changed at the
// next reload, which then rebuilds).
func caSums(cfg *config.File) map[string][sha256.Size]byte {
	out := map[string][sha256.Size]byte{}
	files := []string{caFileOf(cfg.Callers.JWT)}
	for _, d := range cfg.Domains {
		files = append(files, d.CAFile)
	}
	for _, f := range files {
		if f == "" {
			continue
		}
		if b, err := os.ReadFile(f); err == nil { // an unreadable file fails the build itself
			out[f] = sha256.Sum256(b)
		}
	}
	return out
}

// sameFile: the CA file had the same content for both generations.
func sameFile(prev, next *generation, file string) bool {
	if file == "" {
		return true
	}
	a, okA := prev.caSums[file]
	b, okB := next.caSums[file]
	return okA && okB && a == b
}

// reloader holds the running configuration and serialises its reloads.
type reloader struct {
	deps  *shared
	src   *Source        // nil: not from a file (sandbox); no reloads
	level *slog.LevelVar // nil: the log level does not reload
	cur   atomic.Pointer[generation]
	mu    sync.Mutex        // one reload at a time
	seen  [sha256.Size]byte // content last applied or refused (mu)
}

func (r *reloader) init(deps *shared, gen *generation, opts Options) {
	r.deps, r.src, r.level = deps, opts.Source, opts.LogLevel
	r.cur.Store(gen)
	var sum []byte
	if r.src != nil {
		r.seen = r.src.sum
		sum = r.seen[:]
	}
	deps.metrics.ConfigLoaded(sum, time.Now())
}

// Current returns the running configuration and broker: those of the last
// reload applied, else those of the start-up.
func (a *App) Current() (*config.File, *broker.Broker) {
	g := a.live.cur.Load()
	return g.cfg, g.broker
}

// Reload reads the configuration file again (Options.Source) and applies
// it — what SIGHUP does; trigger names the cause in the logs. The file is
// checked completely first, with the code of the start-up and of `config
// check`, and the new broker, callers and policy are built (a new or changed
// domain is discovered); only then does it take effect, at once, for every
// call that starts afterwards (calls in flight finish under the
// configuration they started with). An invalid file, a failed build or a
// change to a restart-only key (config.RestartOnly) is refused as a whole
// with a *ReloadError (or the build's error), every problem logged by YAML
// path; the running configuration stays. Both outcomes are counted in
// chainbroker_config_reloads_total.
func (a *App) Reload(ctx context.Context, trigger string) error {
	if a.live.src == nil {
		return errors.New("app: reload: the configuration was not read from a file")
	}
	a.live.mu.Lock()
	defer a.live.mu.Unlock()
	b, err := config.ReadFile(a.live.src.Path)
	if err != nil {
		a.refused(a.log.With("trigger", trigger), []string{err.Error()}, 0)
		return err
	}
	return a.apply(ctx, trigger, b)
}

// apply checks, builds and swaps in the configuration in b; live.mu held.
func (a *App) apply(ctx context.Context, trigger string, b []byte) error {
	r := &a.live
	sum := sha256.Sum256(b)
	r.seen = sum
	log := a.log.With("trigger", trigger, "config_sha256", hex.EncodeToString(sum[:6]))
	cfg, err := config.ParseAndCheck(b, r.deps.env, r.src.Overrides...)
	if err != nil {
		p := problems(err)
		a.refused(log, p, 0)
		return &ReloadError{Problems: p}
	}
	cur := r.cur.Load()
	if keys := config.RestartRequired(cur.cfg, cfg); len(keys) > 0 {
		for _, k := range keys {
			log.Error("configuration reload refused: this key changed and needs a restart", "key", k)
		}
		a.refused(log, nil, len(keys))
		return &ReloadError{RestartKeys: keys}
	}
	next, err := buildGeneration(ctx, cfg, r.deps, cur)
	if err != nil {
		a.refused(log, problems(err), 0)
		return err
	}
	if a.IssuerKeys != nil {
		if err := a.IssuerKeys.Replace(keyConfigs(cfg.Issuer, a.insecureKeys)); err != nil {
			err = fmt.Errorf("issuer.keys: %w", err)
			a.refused(log, []string{err.Error()}, 0)
			return err
		}
	}
	names := make([]string, 0, len(cfg.Domains))
	for _, d := range cfg.Domains {
		names = append(names, d.Name)
	}
	r.deps.metrics.AddDomains(names...) // before the first chain of a new domain
	if err := a.Server.SetRuntime(next.runtime()); err != nil {
		a.refused(log, []string{err.Error()}, 0)
		return err
	}
	r.cur.Store(next)
	if r.level != nil {
		var l slog.Level
		_ = l.UnmarshalText([]byte(cfg.Log.Level)) // validated
		r.level.Set(l)
	}
	r.deps.metrics.ConfigReloaded(true)
	r.deps.metrics.ConfigLoaded(sum[:], time.Now())
	added, removed, rebuilt, kept := domainChanges(cur, next)
	log.Info("configuration reloaded", "domains", len(cfg.Domains), "chains", len(cfg.Chains), "policy_entries", len(cfg.Policy),
		"domains_added", added, "domains_removed", removed, "domains_rebuilt", rebuilt, "domains_kept", kept)
	return nil
}

// refused logs a refused reload's problems, one line each, then a summary
// (restartKeys: how many restart-only keys changed, logged by the caller),
// and counts it.
func (a *App) refused(log *slog.Logger, problems []string, restartKeys int) {
	for _, p := range problems {
		log.Error("configuration reload refused", "problem", p)
	}
	log.Error("configuration reload refused; the running configuration stays", "problems", len(problems), "restart_keys", restartKeys)
	a.live.deps.metrics.ConfigReloaded(false)
}

// problems splits an error into its problems: config.Problems (by YAML path
// and line) and joined errors one by one.
func problems(err error) []string {
	var p config.Problems
	if errors.As(err, &p) {
		return p
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, problems(e)...)
		}
		return out
	}
	return []string{err.Error()}
}

// domainChanges names the domains a reload added, removed, rebuilt (their
// configuration changed) and kept (with their keys and circuit state).
func domainChanges(prev, next *generation) (added, removed, rebuilt, kept []string) {
	added, removed, rebuilt, kept = []string{}, []string{}, []string{}, []string{} // [] rather than null in the log
	for _, d := range next.cfg.Domains {
		switch {
		case prev.cfg.Domain(d.Name) == nil:
			added = append(added, d.Name)
		case slices.Contains(next.kept, d.Name):
			kept = append(kept, d.Name)
		default:
			rebuilt = append(rebuilt, d.Name)
		}
	}
	for _, d := range prev.cfg.Domains {
		if next.cfg.Domain(d.Name) == nil {
			removed = append(removed, d.Name)
		}
	}
	return added, removed, rebuilt, kept
}

// WatchConfig reads the configuration file every interval (<= 0:
// DefaultConfigPollInterval) until ctx ends, and reloads it (as Reload)
// when its content changed and then stayed the same for one interval (a
// file caught half-written is not applied). It compares contents (SHA-256),
// not modification times: a Kubernetes ConfigMap volume replaces the file
// by swapping a symlink, which keeps the link's own times, and a file
// rewritten within the file system's time granularity keeps its time. A
// refused content is not retried until the file changes again (or SIGHUP).
func (a *App) WatchConfig(ctx context.Context, interval time.Duration) {
	r := &a.live
	if r.src == nil {
		return
	}
	if interval <= 0 {
		interval = DefaultConfigPollInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var pending *[sha256.Size]byte // a new content, applied if it is still there at the next tick
	readFailed := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b, err := config.ReadFile(r.src.Path)
		if err != nil {
			if !readFailed { // once per outage, not every interval
				a.log.Warn("configuration file unreadable; the running configuration stays", "error", err)
			}
			readFailed, pending = true, nil
			continue
		}
		readFailed = false
		sum := sha256.Sum256(b)
		r.mu.Lock()
		switch {
		case sum == r.seen:
			pending = nil
		case pending == nil || *pending != sum:
			pending = &sum
		default:
			pending = nil
			_ = a.apply(ctx, "file change", b) // logged and counted
		}
		r.mu.Unlock()
	}
}
