package telemetry

import (
	"encoding/binary"
	"maps"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of a configuration reload (chainbroker_config_reloads_total).
const (
	ReloadOK    = "ok"
	ReloadError = "error"
)

func (m *Metrics) registerReloads() {
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "chainbroker_config_reloads_total",
		Help: "Configuration reloads (SIGHUP or a change of the file) by result: ok (applied) or error (invalid, or a key that needs a restart changed; the running configuration stays).",
	}, []string{"result"})
	for _, r := range []string{ReloadOK, ReloadError} {
		m.reloads.WithLabelValues(r) // both series from the start, at 0
	}
	m.reloadOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "chainbroker_config_last_reload_successful",
		Help: "1 when the last configuration reload (or the start-up) was applied, 0 when it was refused.",
	})
	m.reloadOK.Set(1)
	m.reloadTime = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "chainbroker_config_last_reload_success_timestamp_seconds",
		Help: "Unix time at which the running configuration was loaded (start-up or the last applied reload).",
	})
	m.configHash = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "chainbroker_config_hash",
		Help: "The first 6 bytes of the SHA-256 of the running configuration file, as a number (0: not read from a file); it differs between replicas running different files.",
	})
}

// AddDomains adds domain names to those domain labels take (a reload that
// adds a domain); names of earlier configurations stay valid.
func (m *Metrics) AddDomains(names ...string) {
	m.domainsMu.Lock()
	defer m.domainsMu.Unlock()
	next := map[string]bool{}
	if cur := m.domains.Load(); cur != nil {
		next = maps.Clone(*cur)
	}
	for _, n := range names {
		next[n] = true
	}
	m.domains.Store(&next)
}

// ConfigLoaded records the configuration in force: at start-up and after
// each applied reload. sha256 is the file's digest (nil: not from a file).
func (m *Metrics) ConfigLoaded(sha256 []byte, at time.Time) {
	m.reloadOK.Set(1)
	m.reloadTime.Set(float64(at.UnixNano()) / 1e9)
	var h float64
	if len(sha256) >= 6 {
		var b [8]byte
		copy(b[2:], sha256[:6])
		h = float64(binary.BigEndian.Uint64(b[:])) // 48 bits: exact in a float64
	}
	m.configHash.Set(h)
}

// ConfigReloaded counts a reload: ok (applied; ConfigLoaded records it) or
// refused.
func (m *Metrics) ConfigReloaded(ok bool) {
	if ok {
		m.reloads.WithLabelValues(ReloadOK).Inc()
		return
	}
	m.reloads.WithLabelValues(ReloadError).Inc()
	m.reloadOK.Set(0)
}
