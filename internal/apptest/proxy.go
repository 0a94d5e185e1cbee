package apptest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/config"
)

// maxProxyBody bounds what the proxy reads of a request or records of an
// answer.
const maxProxyBody = 1 << 20

// Fault is an answer the proxy gives itself instead of forwarding: an OAuth
// error body {"error", "error_description"} with Status, and Retry-After
// when set.
type Fault struct {
	Status      int    // default 503
	Error       string // default temporarily_unavailable
	Description string
	RetryAfter  string
}

// Request is what the proxy saw of one request.
type Request struct {
	At       time.Time
	Form     url.Values // the form body (a token request's parameters)
	Header   http.Header
	Answered bool // by the proxy itself (a fault, a refusal, a replayed answer), not forwarded
}

// Proxy stands on a loopback port in front of an authorization server's
// token endpoint (its upstream). It forwards requests and records them
// (Requests), and on demand:
//   - answers the next requests, or all of them, with a Fault (FailNext,
//     Answer) or those of one subject token (Refuse);
//   - delays a fraction of the requests (Slow);
//   - holds every request until released (Hold, Release): a call caught
//     in flight;
//   - stops listening, connections refused, and listens again on the same
//     address (Close, Open);
//   - records the successful answers (RecordAnswers) and hands them out
//     again for chosen subject tokens (Replay): a domain issuing a grant it
//     already issued.
//
// It is closed when the test ends.
type Proxy struct {
	addr string
	rp   *httputil.ReverseProxy
	tr   *http.Transport

	mu        sync.Mutex
	srv       *http.Server // nil while closed
	upstream  *url.URL
	path      string // upstream's path: the token endpoint's
	fail      int
	failWith  Fault
	down      *Fault
	refuse    map[string]Fault // by subject_token
	slowFrac  float64
	slowDelay time.Duration
	gate      chan struct{} // Hold: closed by Release; nil: not holding
	arrived   chan struct{} // Hold: one value per held request
	dropReqs  bool
	requests  []Request
	recording bool
	recorded  [][]byte
	replayFor map[string]bool
	pool      [][]byte
	next      int
}

// NewProxy starts a proxy forwarding to upstream, a URL whose path is the
// token endpoint's (Endpoint); upstream may be "" when Front sets it.
func NewProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	p := &Proxy{tr: tr, refuse: map[string]Fault{}, replayFor: map[string]bool{}}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        func(pr *httputil.ProxyRequest) { pr.SetURL(p.target()) },
		Transport:      tr,
		ModifyResponse: p.recordAnswer,
		ErrorLog:       log.New(io.Discard, "", 0),
	}
	if upstream != "" {
		if err := p.setUpstream(upstream); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(func() {
		p.Release()
		p.Close()
		tr.CloseIdleConnections()
	})
	return p
}

func (p *Proxy) setUpstream(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("proxy upstream: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.upstream, p.path = &url.URL{Scheme: u.Scheme, Host: u.Host}, u.Path
	return nil
}

func (p *Proxy) target() *url.URL {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.upstream
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.addr }

// Endpoint is the proxy's URL for the upstream's path: the token endpoint
// to configure instead of the upstream's.
func (p *Proxy) Endpoint() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return "http://" + p.addr + p.path
}

// Front routes domain i's token endpoint through p, then applies tune to
// the domain when not nil: an Options.Mutate.
func (p *Proxy) Front(i int, tune func(*config.Domain)) func(*config.File) {
	return func(f *config.File) {
		if err := p.setUpstream(f.Domains[i].TokenEndpoint); err != nil {
			panic(err) // the sandbox's own URL
		}
		f.Domains[i].TokenEndpoint = p.Endpoint()
		if tune != nil {
			tune(&f.Domains[i])
		}
	}
}

func (p *Proxy) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(p.handle), ErrorLog: log.New(io.Discard, "", 0)}
	p.mu.Lock()
	p.srv = srv
	p.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// Close stops listening and closes every connection: the domain is
// unreachable (connection refused) until Open.
func (p *Proxy) Close() {
	p.mu.Lock()
	srv := p.srv
	p.srv = nil
	p.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// Open listens again on the proxy's address after Close (trying for up to
// a second while the port is not yet free).
func (p *Proxy) Open() error {
	var err error
	for range 20 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			p.serve(ln)
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("proxy: listen again on %s: %w", p.addr, err)
}

// FailNext answers the next n requests with f.
func (p *Proxy) FailNext(n int, f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail, p.failWith = n, f
}

// Answer answers every request with f until Forward.
func (p *Proxy) Answer(f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = &f
}

// Forward ends Answer and FailNext: requests are forwarded again.
func (p *Proxy) Forward() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down, p.fail = nil, 0
}

// Refuse answers the requests whose subject_token is subjectToken with f
// (again: with the new f), forwarding the others.
func (p *Proxy) Refuse(subjectToken string, f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse[subjectToken] = f
}

// Slow delays a fraction frac of the requests by delay (0: none).
func (p *Proxy) Slow(frac float64, delay time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.slowFrac, p.slowDelay = frac, delay
}

// Hold holds every request that arrives from now on, before anything else
// is done with it, until Release (or until its client gives up). The
// channel it returns receives a value as each held request arrives (up to
// 64 unread). Hold while holding returns the same channel.
func (p *Proxy) Hold() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate == nil {
		p.gate, p.arrived = make(chan struct{}), make(chan struct{}, 64)
	}
	return p.arrived
}

// Release lets the held requests go on (answered as the proxy then would)
// and ends Hold. It runs when the test ends.
func (p *Proxy) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate != nil {
		close(p.gate)
		p.gate = nil
	}
}

// KeepRequests turns the recording of requests (Requests) on (the default)
// or off: a long load test keeps its memory flat.
func (p *Proxy) KeepRequests(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropReqs = !on
}

// Requests returns the requests seen so far, in arrival order.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.requests...)
}

// Assertions are the assertion parameters of the requests seen ("" for a
// request without one).
func (p *Proxy) Assertions() []string {
	var out []string
	for _, r := range p.Requests() {
		out = append(out, r.Form.Get("assertion"))
	}
	return out
}

// DuplicateJTIs returns the jtis of the assertions presented more than once,
// with their counts, and how many distinct jtis were presented.
func (p *Proxy) DuplicateJTIs() (map[string]int, int) {
	seen := map[string]int{}
	for _, a := range p.Assertions() {
		if jti := jwtID(a); jti != "" {
			seen[jti]++
		}
	}
	dup := map[string]int{}
	for j, n := range seen {
		if n > 1 {
			dup[j] = n
		}
	}
	return dup, len(seen)
}

// RecordAnswers turns the recording of the upstream's successful answers on
// or off and returns what was recorded so far.
func (p *Proxy) RecordAnswers(on bool) [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.recording = on
	return append([][]byte(nil), p.recorded...)
}

// Replay answers the requests carrying one of subjectTokens with the
// answers of pool, round robin, instead of forwarding them.
func (p *Proxy) Replay(pool [][]byte, subjectTokens ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pool = pool
	for _, s := range subjectTokens {
		p.replayFor[s] = true
	}
}

func (p *Proxy) handle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxProxyBody))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, _ := url.ParseQuery(string(body))
	subject := form.Get("subject_token")

	p.mu.Lock()
	gate, arrived := p.gate, p.arrived
	p.mu.Unlock()
	if gate != nil {
		select {
		case arrived <- struct{}{}:
		default: // nobody reads: the request is held all the same
		}
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
	}

	p.mu.Lock()
	frac, delay := p.slowFrac, p.slowDelay
	var answer *Fault
	var canned []byte
	switch f, refused := p.refuse[subject]; {
	case refused:
		answer = &f
	case p.down != nil:
		answer = p.down
	case p.fail > 0:
		p.fail--
		answer = &p.failWith
	case p.replayFor[subject] && len(p.pool) > 0:
		canned = p.pool[p.next%len(p.pool)]
		p.next++
	}
	if !p.dropReqs {
		p.requests = append(p.requests, Request{At: time.Now(), Form: form, Header: r.Header.Clone(), Answered: answer != nil || canned != nil})
	}
	var fault Fault
	if answer != nil {
		fault = *answer
	}
	p.mu.Unlock()

	if frac > 0 && rand.Float64() < frac {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	switch {
	case answer != nil:
		writeFault(w, fault)
	case canned != nil:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(canned)
	default:
		p.rp.ServeHTTP(w, r)
	}
}

func writeFault(w http.ResponseWriter, f Fault) {
	if f.Status == 0 {
		f.Status = http.StatusServiceUnavailable
	}
	if f.Error == "" {
		f.Error = "temporarily_unavailable"
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(f.Status)
	b, _ := json.Marshal(map[string]string{"error": f.Error, "error_description": f.Description})
	_, _ = w.Write(b)
}

// recordAnswer keeps a successful answer while RecordAnswers is on.
func (p *Proxy) recordAnswer(resp *http.Response) error {
	p.mu.Lock()
	recording := p.recording
	p.mu.Unlock()
	if !recording || resp.StatusCode != http.StatusOK {
		return nil
	}
	out, err := io.ReadAll(io.LimitReader(resp.Body, maxProxyBody))
	resp.Body.Close()
	if err != nil {
		return err
	}
	resp.Body = io.NopCloser(bytes.NewReader(out))
	resp.ContentLength = int64(len(out))
	resp.Header.Del("Content-Length")
	p.mu.Lock()
	p.recorded = append(p.recorded, out)
	p.mu.Unlock()
	return nil
}

// jwtID is the jti claim of a compact JWT, "" if there is none.
func jwtID(raw string) string {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		JTI string `json:"jti"`
	}
	_ = json.Unmarshal(payload, &c)
	return c.JTI
}
