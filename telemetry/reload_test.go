package telemetry

import (
	"crypto/sha256"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/store"
)

// scrape returns the exposition text of m.
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// A domain added by a reload gets its own label; those of the start-up
// keep theirs; any other name stays "unknown".
func TestAddDomains(t *testing.T) {
	m := NewMetrics("domain-a")
	m.AddDomains("domain-c")
	for _, target := range []string{"domain-c", "domain-z"} {
		m.ChainFinished(&store.Event{SourceDomain: "domain-a", TargetDomain: target, Outcome: store.OutcomeSuccess}, time.Millisecond)
	}
	text := scrape(t, m)
	for _, want := range []string{`target="domain-c"`, `target="unknown"`} {
		if !strings.Contains(text, `chainbroker_chains_total{outcome="success",reason="",source="domain-a",`+want+`} 1`) {
			t.Errorf("no chain counted with %s:\n%s", want, text)
		}
	}
	if strings.Contains(text, "domain-z") {
		t.Error("a domain never configured became a label")
	}
}

func TestConfigReloadMetrics(t *testing.T) {
	m := NewMetrics()
	for _, want := range []string{`chainbroker_config_reloads_total{result="ok"} 0`, `chainbroker_config_reloads_total{result="error"} 0`} {
		if !strings.Contains(scrape(t, m), want) {
			t.Errorf("at start: no %s", want)
		}
	}
	sum := sha256.Sum256([]byte("listen: {}\n"))
	m.ConfigLoaded(sum[:], time.Unix(1700000000, 0))
	m.ConfigReloaded(false)
	text := scrape(t, m)
	for _, want := range []string{`chainbroker_config_reloads_total{result="error"} 1`, "chainbroker_config_last_reload_successful 0",
		"chainbroker_config_last_reload_success_timestamp_seconds 1.7e+09"} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("after a refused reload: no %s", want)
		}
	}
	m.ConfigReloaded(true)
	m.ConfigLoaded(sum[:], time.Unix(1700000001, 0))
	text = scrape(t, m)
	for _, want := range []string{`chainbroker_config_reloads_total{result="ok"} 1`, "chainbroker_config_last_reload_successful 1",
		"chainbroker_config_last_reload_success_timestamp_seconds 1.700000001e+09"} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("after an applied reload: no %s", want)
		}
	}
	if strings.Contains(text, "chainbroker_config_hash 0\n") || !strings.Contains(text, "chainbroker_config_hash ") {
		t.Error("no hash of the configuration")
	}
}
