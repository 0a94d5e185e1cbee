// Package load is chainbench's load generation: the targets a chain is sent
// to (the broker over gRPC or REST, or both hops directly: the baseline), the
// closed and open (paced) loops that drive them, and the per-run figures
// computed from the probes around the measured window.
package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/bench/measure"
)

// Target performs one chain: through the broker (gRPC or REST), or directly
// against the two domains (the baseline).
type Target interface {
	Do(ctx context.Context, subject string) error
	Close()
}

// NewHTTPClient is a keep-alive client able to hold one idle connection per
// concurrent worker, so that no run pays for connection churn on the client
// side.
func NewHTTPClient(maxConc int) *http.Client {
	return &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        0, // no global limit
			MaxIdleConnsPerHost: maxConc + 16,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// ---- through the broker, gRPC ----

// GRPC calls the broker over conns gRPC connections, taking them in
// turn. A chain counts when the broker answers an access token, or AWS
// credentials (an aws target).
type GRPC struct {
	conns   []*grpc.ClientConn
	clients []pb.ChainServiceClient
	next    atomic.Uint32
	APIKey  string
	Domain  string
	// SubjectTokenType, when set, is sent with each chain (the ID token
	// type for ID-JAG chains).
	SubjectTokenType string
}

// NewGRPC connects conns gRPC connections to the broker at addr; chains ask
// for targetDomain, with apiKey when it is set.
func NewGRPC(addr, apiKey, targetDomain string, conns int) (*GRPC, error) {
	t := &GRPC{APIKey: apiKey, Domain: targetDomain}
	for range max(conns, 1) {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Close()
			return nil, err
		}
		t.conns = append(t.conns, conn)
		t.clients = append(t.clients, pb.NewChainServiceClient(conn))
	}
	return t, nil
}

func (t *GRPC) Do(ctx context.Context, subject string) error {
	if t.APIKey != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-api-key", t.APIKey)
	}
	Client := t.clients[int(t.next.Add(1))%len(t.clients)]
	resp, err := Client.Chain(ctx, &pb.ChainRequest{SubjectToken: subject, SubjectTokenType: t.SubjectTokenType, TargetDomain: t.Domain})
	if err != nil {
		return err
	}
	// An aws target answers credentials instead of an access token.
	if resp.GetAccessToken() == "" && resp.GetAwsCredentials().GetAccessKeyId() == "" {
		return errors.New("gRPC: answer without access_token or aws_credentials")
	}
	return nil
}

func (t *GRPC) Close() {
	for _, c := range t.conns {
		c.Close()
	}
}

// ---- through the broker, REST ----

type REST struct {
	Client *http.Client
	URL    string
	APIKey string
	Domain string
}

func (t *REST) Do(ctx context.Context, subject string) error {
	// Subject tokens are base64url JWTs: no JSON escaping needed.
	body := `{"subject_token":"` + subject + `","target_domain":"` + t.Domain + `"}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if t.APIKey != "" {
		req.Header.Set("X-Api-Key", t.APIKey)
	}
	resp, err := t.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`"access_token":"ey`)) {
		return fmt.Errorf("REST: HTTP %d: %.200s", resp.StatusCode, b)
	}
	return nil
}

func (t *REST) Close() { t.Client.CloseIdleConnections() }

// ---- the baseline: a plain client doing both hops directly ----

// Baseline is what a service would do without the broker: token
// Exchange at A with the broker's client credentials, then the jwt-bearer
// grant at B with the assertion, with a well-configured keep-alive client.
// It does not validate the assertion or keep replay markers or an audit
// trail: that is the broker's added work.
type Baseline struct {
	Client           *http.Client
	AToken, BToken   string
	Audience         string
	ASecret, BSecret string
	ClientID         string
}

// TokenAnswer is a token endpoint's JSON answer, success or error.
type TokenAnswer struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	Scope           string `json:"scope"`
	IDToken         string `json:"id_token"`
	Error           string `json:"error"`
	Description     string `json:"error_description"`
}

func (t *Baseline) post(ctx context.Context, endpoint, secret string, form url.Values) (TokenAnswer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return TokenAnswer{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(t.ClientID), url.QueryEscape(secret))
	resp, err := t.Client.Do(req)
	if err != nil {
		return TokenAnswer{}, err
	}
	defer resp.Body.Close()
	var ans TokenAnswer
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&ans); err != nil {
		return TokenAnswer{}, fmt.Errorf("HTTP %d: %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK || ans.AccessToken == "" {
		return TokenAnswer{}, fmt.Errorf("HTTP %d: %s: %s", resp.StatusCode, ans.Error, ans.Description)
	}
	return ans, nil
}

func (t *Baseline) Do(ctx context.Context, subject string) error {
	assertion, err := t.Exchange(ctx, subject)
	if err != nil {
		return err
	}
	_, err = t.JWTBearer(ctx, assertion)
	return err
}

// Exchange is hop 1: the subject token for a grant whose audience is B.
func (t *Baseline) Exchange(ctx context.Context, subject string) (string, error) {
	ans, err := t.post(ctx, t.AToken, t.ASecret, url.Values{
		"grant_type":           {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":        {subject},
		"subject_token_type":   {"urn:ietf:params:oauth:token-type:access_token"},
		"requested_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		"audience":             {t.Audience},
	})
	if err != nil {
		return "", fmt.Errorf("token exchange: %w", err)
	}
	return ans.AccessToken, nil
}

// JWTBearer is hop 2: the grant for B's access token.
func (t *Baseline) JWTBearer(ctx context.Context, assertion string) (string, error) {
	ans, err := t.JWTBearerAnswer(ctx, assertion)
	return ans.AccessToken, err
}

// JWTBearerAnswer is hop 2 with B's whole answer (token type, lifetime,
// scope), what a broker hands back to its caller.
func (t *Baseline) JWTBearerAnswer(ctx context.Context, assertion string) (TokenAnswer, error) {
	ans, err := t.post(ctx, t.BToken, t.BSecret, url.Values{
		"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"},
		"assertion":  {assertion},
	})
	if err != nil {
		return TokenAnswer{}, fmt.Errorf("jwt-bearer: %w", err)
	}
	return ans, nil
}

func (t *Baseline) Close() { t.Client.CloseIdleConnections() }

// ---- the load loop ----

// Sample is what a probe reads before and after the measured window.
type Sample struct {
	at       time.Time
	Broker   time.Duration // broker process CPU
	Domains  time.Duration // sandbox process CPU
	Redis    time.Duration
	self     time.Duration    // this process (the load generator)
	system   measure.CPUTimes // whole machine
	Procs    map[int]measure.ProcEntry
	Mallocs  float64             // broker go_memstats_mallocs_total
	Chains   map[float64]float64 // broker's Chain duration histogram (measure.ChainHistogram)
	okBroker bool
	OKMalloc bool
}

// PIDs are the processes a sample reads (0: none).
type PIDs struct{ Broker, Domains, Redis int }

// ReadCPU reads the CPU times of our processes and of the machine, closest
// to the window's edge, and stamps the sample.
func (s *Sample) ReadCPU(p PIDs) {
	var err error
	if p.Broker != 0 {
		s.Broker, err = measure.ProcCPU(p.Broker)
		s.okBroker = err == nil
	}
	s.Domains, _ = measure.ProcCPU(p.Domains)
	if p.Redis != 0 {
		s.Redis, _ = measure.ProcCPU(p.Redis)
	}
	s.self, _ = measure.ProcCPU(measure.SelfPID())
	s.system, _ = measure.SystemCPU()
	s.at = time.Now()
}

// Result is one (target, concurrency) run.
type Result struct {
	Target      string  // baseline, grpc, rest
	Concurrency int     // workers (closed loop) or callers (open loop)
	Offered     float64 // chains/s offered by the open loop (RunPaced); 0: closed loop (RunClosed)
	Window      time.Duration
	Chains      int
	Errors      int
	FirstError  string
	P50         time.Duration
	P90         time.Duration
	P99         time.Duration
	Max         time.Duration
	Mean        time.Duration
	// TimerLateP99 is the p99 of how late the load generator's timer woke
	// the callers that waited for a chain's scheduled time (open loop), and
	// TimerLateShare the share of the window's chains that waited so.
	TimerLateP99   time.Duration
	TimerLateShare float64

	BrokerCPU   time.Duration // per chain; 0 for the baseline
	DomainsCPU  time.Duration // per chain
	RedisCPU    time.Duration // per chain
	LoadgenCPU  time.Duration // per chain
	OtherCPU    float64       // cores: machine busy time outside our processes (incl. softirq)
	SoftirqCPU  float64       // cores: irq + softirq (mostly loopback traffic, ours)
	StealCPU    float64       // cores: stolen by the hypervisor
	Foreign     string        // the busiest other processes
	Allocs      float64       // broker mallocs per chain
	HandlerP99  float64       // seconds: bucket bound of p99 inside the broker (measure.ChainHistogram); +Inf: past the last
	HasHandler  bool
	PeakRSS     uint64 // broker VmHWM during the run (bytes)
	PeakRSSNote string
	HasBroker   bool
	HasAllocs   bool
	Attempts    int // measurements made, the least disturbed kept
}

// Throughput is the run's chains per second.
func (r Result) Throughput() float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(r.Chains) / r.Window.Seconds()
}

// KeptUp says whether an open-loop run achieved at least 99% of the rate
// it was offered: below that, its callers fell behind and the server did not
// sustain the rate.
func (r Result) KeptUp() bool {
	return r.Offered > 0 && r.Throughput() >= 0.99*r.Offered
}

// RunClosed is the closed loop: conc workers, each sending its next chain as
// soon as the previous one answers; warm-up, then a measured window between
// two probes. A chain counts when it completes inside the window. By
// Little's law the mean latency of such a run is conc ÷ throughput whatever
// the server does, so it measures throughput, not latency at a concurrency.
func RunClosed(ctx context.Context, t Target, conc int, warmup, window time.Duration, subjects []string,
	probe func() Sample) Driven {
	closed := func(int) time.Time { return time.Now() }
	return drive(ctx, t, conc, warmup, window, subjects, probe, closed)
}

// RunPaced is the open loop: the chains are offered at rate chains/s
// whatever the server does. Chain i of the run (counted from 0) is
// scheduled at i/rate after the start; caller w sends chains w, w+callers,
// w+2·callers, ..., so each caller sends every callers/rate and the
// callers' phases are spread evenly over that interval. A caller sleeps
// until its chain's scheduled time, or sends at once when it is late (its
// previous chain answered after this one was due). Latency is measured from
// the scheduled time, not the actual send, so the time a chain waited for
// its caller counts (no coordinated omission). Warm-up, window and what
// counts are as in RunClosed.
func RunPaced(ctx context.Context, t Target, callers int, rate float64, warmup, window time.Duration, subjects []string,
	probe func() Sample) Driven {
	t0 := time.Now()
	return drive(ctx, t, callers, warmup, window, subjects, probe, func(i int) time.Time {
		return t0.Add(time.Duration(float64(i) / rate * float64(time.Second)))
	})
}

// Driven is what one load measured.
type Driven struct {
	lats          []time.Duration // of the chains completed in the window, sorted
	errs          int
	firstErr      string
	before, after Sample // the probes around the window
	// timerLate are, sorted, how late the load generator's own timer woke
	// a caller that waited for its chain's scheduled time (open loop only):
	// the share of the latency that is the load generator's, not the
	// server's.
	timerLate []time.Duration
}

// drive runs one load: n workers, worker w making chains w, w+n, w+2n, ...
// (chain i uses subjects[i mod len]). scheduled(i) is when chain i is due:
// the worker waits until then, and its latency runs from then to the
// answer. Warm-up, then the window between two probes; a chain counts when
// it completes inside the window, and so does an error.
func drive(ctx context.Context, t Target, n int, warmup, window time.Duration, subjects []string,
	probe func() Sample, scheduled func(i int) time.Time) (d Driven) {
	var (
		recording atomic.Bool
		stop      = make(chan struct{})
		wg        sync.WaitGroup
		mu        sync.Mutex
		errCount  atomic.Int64
		errOnce   sync.Once
	)
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, 4096)
			var late []time.Duration
			flush := func() {
				mu.Lock()
				d.lats = append(d.lats, mine...)
				d.timerLate = append(d.timerLate, late...)
				mu.Unlock()
			}
			timer := time.NewTimer(time.Hour)
			defer timer.Stop()
			for i := w; ; i += n {
				select {
				case <-stop:
					flush()
					return
				case <-ctx.Done():
					return
				default:
				}
				start := scheduled(i)
				timerLate := time.Duration(-1)
				if wait := time.Until(start); wait > 0 {
					timer.Reset(wait)
					select {
					case <-timer.C:
						timerLate = time.Since(start)
					case <-stop:
						flush()
						return
					case <-ctx.Done():
						return
					}
				}
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				err := t.Do(cctx, subjects[i%len(subjects)])
				took := time.Since(start)
				cancel()
				if !recording.Load() {
					if err != nil && ctx.Err() == nil {
						// Errors during warm-up slow nothing down but must not go unseen.
						errOnce.Do(func() { d.firstErr = "warm-up: " + err.Error() })
					}
					continue
				}
				if err != nil {
					if errCount.Add(1) == 1 {
						errOnce.Do(func() { d.firstErr = err.Error() })
					}
					continue
				}
				mine = append(mine, took)
				if timerLate >= 0 {
					late = append(late, timerLate)
				}
			}
		}()
	}
	SleepCtx(ctx, warmup)
	d.before = probe()
	recording.Store(true)
	SleepCtx(ctx, window)
	recording.Store(false)
	d.after = probe()
	close(stop)
	wg.Wait()
	slices.Sort(d.lats)
	slices.Sort(d.timerLate)
	d.errs = int(errCount.Load())
	return d
}

func SleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// quantile of sorted durations (nearest rank).
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*q+0.999999) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

func Mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}

// Summarize turns what one load measured into a run's figures: latency
// quantiles, CPU per chain of each process, the machine's other CPU and who
// used it, and for the broker (isBroker) its allocations and the p99 inside
// it. ours are the benchmark's processes.
func Summarize(name string, conc int, d Driven, isBroker bool, ours []int) Result {
	lats, before, after := d.lats, d.before, d.after
	r := Result{
		Target: name, Concurrency: conc, Window: after.at.Sub(before.at), Chains: len(lats), Errors: d.errs,
		FirstError: d.firstErr, P50: Quantile(lats, 0.50), P90: Quantile(lats, 0.90), P99: Quantile(lats, 0.99),
		Mean: Mean(lats), HasBroker: isBroker && before.okBroker && after.okBroker,
	}
	if len(lats) > 0 {
		r.Max = lats[len(lats)-1]
	}
	if len(d.timerLate) > 0 {
		r.TimerLateP99, r.TimerLateShare = Quantile(d.timerLate, 0.99), float64(len(d.timerLate))/float64(max(len(lats), 1))
	}
	if n := time.Duration(max(len(lats), 1)); len(lats) > 0 {
		r.BrokerCPU = (after.Broker - before.Broker) / n
		r.DomainsCPU = (after.Domains - before.Domains) / n
		r.RedisCPU = (after.Redis - before.Redis) / n
		r.LoadgenCPU = (after.self - before.self) / n
	}
	oursCPU := (after.Broker - before.Broker) + (after.Domains - before.Domains) + (after.Redis - before.Redis) + (after.self - before.self)
	if secs := r.Window.Seconds(); secs > 0 {
		r.OtherCPU = max(after.system.Busy-before.system.Busy-oursCPU, 0).Seconds() / secs
		r.SoftirqCPU = (after.system.Softirq - before.system.Softirq).Seconds() / secs
		r.StealCPU = (after.system.Steal - before.system.Steal).Seconds() / secs
		set := map[int]bool{}
		for _, p := range ours {
			set[p] = true
		}
		r.Foreign = measure.ForeignTop(before.Procs, after.Procs, set, r.Window)
	}
	if isBroker && before.Chains != nil && after.Chains != nil {
		r.HandlerP99, r.HasHandler = measure.QuantileBound(before.Chains, after.Chains, 0.99)
	}
	if isBroker && before.OKMalloc && after.OKMalloc && len(lats) > 0 {
		r.HasAllocs = true
		r.Allocs = (after.Mallocs - before.Mallocs) / float64(len(lats))
	}
	return r
}
