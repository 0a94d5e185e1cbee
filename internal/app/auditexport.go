package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/chainbroker/chainbroker/config"
	"github.com/chainbroker/chainbroker/internal/export"
	"github.com/chainbroker/chainbroker/store"
	"github.com/chainbroker/chainbroker/store/memory"
	redisstore "github.com/chainbroker/chainbroker/store/redis"
	"github.com/chainbroker/chainbroker/telemetry"
)

// auditExport is the audit exporter of audit_export:, when configured.
type auditExport struct {
	exporter *export.Exporter
	sink     export.Sink
}

// buildAuditExport builds the exporter of cfg.AuditExport over the store
// raw (Redis or memory) (nil, nil when the export is off). stdout is the stdout sink's
// writer (nil: os.Stdout).
func buildAuditExport(cfg config.AuditExport, raw store.Store, stdout io.Writer, metrics *telemetry.Metrics, log *slog.Logger) (*auditExport, error) {
	if cfg.Sink == "" {
		return nil, nil
	}
	name := cfg.ConsumerName
	if name == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return nil, fmt.Errorf("audit_export.consumer_name: not set, and the host name is unknown (%v)", err)
		}
		name = h
	}
	var (
		group export.Source
		err   error
	)
	switch st := raw.(type) {
	case *redisstore.Store:
		group, err = st.AuditGroup(cfg.ConsumerGroup, name)
	case *memory.Store:
		// The group lives in this process, like the trail it follows.
		group, err = st.AuditGroup(cfg.ConsumerGroup, name)
	default:
		return nil, fmt.Errorf("audit_export: the store %T keeps no audit stream to follow", raw)
	}
	if err != nil {
		return nil, fmt.Errorf("audit_export: %w", err)
	}
	var sink export.Sink
	switch cfg.Sink {
	case "stdout":
		if stdout == nil {
			stdout = os.Stdout
		}
		sink = export.NewJSONLines(stdout)
	case "file":
		if sink, err = export.OpenJSONLinesFile(cfg.File); err != nil {
			return nil, fmt.Errorf("audit_export.file: %w", err)
		}
	case "otlp":
		if sink, err = export.NewOTLP(export.OTLPOptions{Endpoint: cfg.OTLPEndpoint, ServiceInstance: name,
			Logger: log.With("component", "audit_export")}); err != nil {
			return nil, fmt.Errorf("audit_export.otlp_endpoint: %w", err)
		}
	default:
		return nil, fmt.Errorf("audit_export.sink: %q is not supported", cfg.Sink)
	}
	e, err := export.New(export.Options{
		Source: group, Sink: sink, BatchSize: cfg.BatchSize, ClaimIdle: cfg.ClaimIdle.D(),
		Lag: metrics.AuditExportLag, Logger: log.With("component", "audit_export"),
	})
	if err != nil {
		_ = sink.Close()
		return nil, fmt.Errorf("audit_export: %w", err)
	}
	log.Info("audit export on", "sink", cfg.Sink, "consumer_group", cfg.ConsumerGroup, "consumer_name", name)
	return &auditExport{exporter: e, sink: sink}, nil
}

// start runs the exporter until the returned stop is called. It does not
// stop with ctx: events audited while the server drains are exported too.
func (x *auditExport) start(ctx context.Context) (stop func()) {
	if x == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = x.exporter.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

func (x *auditExport) close() error {
	if x == nil {
		return nil
	}
	return x.sink.Close()
}
