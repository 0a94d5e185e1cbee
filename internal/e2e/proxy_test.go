package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// tokenProxy sits in front of a sandbox token endpoint. It forwards every
// request and records what passed: the successful answers (so that they can
// be replayed) and the jti of every assertion presented (to prove that no
// assertion reaches a domain twice). Requests whose subject_token is in the
// replay set are answered from the recorded pool instead of being
// forwarded: the domain handing out a grant it already issued.
type tokenProxy struct {
	srv      *httptest.Server
	upstream string
	client   *http.Client

	mu        sync.Mutex
	recording bool
	recorded  [][]byte
	replayFor map[string]bool
	pool      [][]byte
	next      int
	replayed  int
	jtis      map[string]int
}

func newTokenProxy(t *testing.T, upstream string) *tokenProxy {
	p := &tokenProxy{
		upstream:  upstream,
		client:    &http.Client{Timeout: 30 * time.Second},
		replayFor: map[string]bool{},
		jtis:      map[string]int{},
	}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(func() {
		p.srv.Close()
		p.client.CloseIdleConnections()
	})
	return p
}

// URL is the proxy's token endpoint (same path as upstream).
func (p *tokenProxy) URL() string {
	u, _ := url.Parse(p.upstream)
	return p.srv.URL + u.Path
}

func (p *tokenProxy) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	form, _ := url.ParseQuery(string(body))
	p.mu.Lock()
	if jti := jwtID(form.Get("assertion")); jti != "" {
		p.jtis[jti]++
	}
	var canned []byte
	if p.replayFor[form.Get("subject_token")] && len(p.pool) > 0 {
		canned = p.pool[p.next%len(p.pool)]
		p.next++
		p.replayed++
	}
	p.mu.Unlock()
	if canned != nil {
		w.Header().Set("Content-Type", "application/json")
		w.Write(canned)
		return
	}

	req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, p.upstream, bytes.NewReader(body))
	for _, h := range []string{"Content-Type", "Authorization", "Traceparent"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	resp, err := p.client.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == http.StatusOK {
		p.mu.Lock()
		if p.recording {
			p.recorded = append(p.recorded, out)
		}
		p.mu.Unlock()
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(out)
}

// record turns the recording of successful answers on or off and returns
// what was recorded so far.
func (p *tokenProxy) record(on bool) [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.recording = on
	return append([][]byte(nil), p.recorded...)
}

// replay answers requests carrying one of subjects from pool, round robin.
func (p *tokenProxy) replay(pool [][]byte, subjects ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pool = pool
	for _, s := range subjects {
		p.replayFor[s] = true
	}
}

// duplicates returns the jtis presented more than once, with their counts,
// and how many distinct jtis were seen.
func (p *tokenProxy) duplicates() (map[string]int, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	dup := map[string]int{}
	for j, n := range p.jtis {
		if n > 1 {
			dup[j] = n
		}
	}
	return dup, len(p.jtis)
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
