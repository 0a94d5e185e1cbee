package config

import (
	"strings"
	"testing"
	"time"
)

func TestAuditExport(t *testing.T) {
	const redis = "store: {backend: redis, redis: {url: redis://127.0.0.1:6379}}\n"
	tests := []struct {
		name string
		yaml string
		want []string // problems; none: valid
	}{
		{"off by default", "", nil},
		{"stdout", redis + "audit_export: {sink: stdout}\n", nil},
		{"file", redis + "audit_export: {sink: file, file: /var/log/chainbroker/audit.jsonl, batch_size: 500, claim_idle: 5m}\n", nil},
		{"otlp https", redis + "audit_export: {sink: otlp, otlp_endpoint: https://collector.example:4318/v1/logs}\n", nil},
		{"otlp http on loopback", redis + "audit_export: {sink: otlp, otlp_endpoint: http://127.0.0.1:4318/v1/logs}\n", nil},
		{"memory store", "audit_export: {sink: stdout}\n", nil},
		{"memory store, file sink", "store: {backend: memory}\naudit_export: {sink: file, file: /var/log/chainbroker/audit.jsonl}\n", nil},
		{"memory store, still checked", "audit_export: {sink: file}\n", []string{"audit_export.file: required with sink: file"}},
		{"unknown sink", redis + "audit_export: {sink: kafka}\n", []string{`audit_export.sink: must be stdout, file or otlp; got "kafka"`}},
		{"keys without a sink", redis + "audit_export: {file: /x}\n", []string{"audit_export.sink: required with the other audit_export keys"}},
		{"file without path", redis + "audit_export: {sink: file}\n", []string{"audit_export.file: required with sink: file"}},
		{"path without file sink", redis + "audit_export: {sink: stdout, file: /x}\n", []string{"audit_export.file: required with sink: file, and only then"}},
		{"otlp without endpoint", redis + "audit_export: {sink: otlp}\n", []string{"audit_export.otlp_endpoint: required"}},
		{"otlp plain http remote", redis + "audit_export: {sink: otlp, otlp_endpoint: http://collector.example:4318/v1/logs}\n", []string{"audit_export.otlp_endpoint: http:// is refused"}},
		{"bounds", redis + "audit_export: {sink: stdout, batch_size: 1001, claim_idle: 1s}\n", []string{
			"audit_export.batch_size: must be between 1 and 1000; got 1001", "audit_export.claim_idle: must be between 30s and 24h"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(minimal + tc.yaml))
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if x := cfg.AuditExport; x.Sink != "" && (x.ConsumerGroup != "chainbroker-export" || x.ClaimIdle.D() < 30*time.Second || x.BatchSize < 1) {
					t.Errorf("defaults not set: %+v", x)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
