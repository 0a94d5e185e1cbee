package export

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"

	"github.com/chainbroker/chainbroker/store"
)

// Defaults of OTLPOptions.
const (
	DefaultOTLPTimeout = 10 * time.Second
	// maxOTLPResponse bounds how much of a collector's answer is read.
	maxOTLPResponse = 64 << 10
	// EventName is the event_name of every log record.
	EventName = "chainbroker.audit"
)

// OTLPOptions configures an OTLP sink.
type OTLPOptions struct {
	// Endpoint is the OTLP/HTTP logs URL (http://host:4318/v1/logs).
	Endpoint string
	// ServiceInstance is the resource's service.instance.id (the consumer
	// name); empty: not set.
	ServiceInstance string
	// Timeout bounds one export request; 0 means DefaultOTLPTimeout.
	Timeout time.Duration
	// Client sends the requests; nil: a client that follows no redirect.
	Client *http.Client
	Logger *slog.Logger
}

// OTLP sends each batch as one OTLP/HTTP ExportLogsServiceRequest
// (protobuf): one log record per event, synchronously, so that a batch is
// accepted only when the collector answered 2xx. The record's body is the
// event's JSON line (as the JSON-lines sinks write it), its attributes the
// event's main fields under chainbroker.audit.*, its time the event's time,
// its severity INFO (WARN for a failed chain).
type OTLP struct {
	endpoint string
	client   *http.Client
	timeout  time.Duration
	resource *resourcepb.Resource
	scope    *commonpb.InstrumentationScope
	log      *slog.Logger
}

// NewOTLP returns an OTLP sink. It does not contact the collector.
func NewOTLP(opts OTLPOptions) (*OTLP, error) {
	u, err := url.Parse(opts.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("export: OTLP endpoint must be an http(s) URL; got %q", opts.Endpoint)
	}
	c := opts.Client
	if c == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		c = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	attrs := []*commonpb.KeyValue{str("service.name", "chainbroker")}
	if opts.ServiceInstance != "" {
		attrs = append(attrs, str("service.instance.id", opts.ServiceInstance))
	}
	o := &OTLP{
		endpoint: u.String(), client: c, timeout: cmpOr(opts.Timeout, DefaultOTLPTimeout),
		resource: &resourcepb.Resource{Attributes: attrs},
		scope:    &commonpb.InstrumentationScope{Name: "github.com/chainbroker/chainbroker/internal/export"},
		log:      opts.Logger,
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// Write implements Sink.
func (o *OTLP) Write(ctx context.Context, events []store.Event) error {
	now := uint64(time.Now().UnixNano())
	recs := make([]*logspb.LogRecord, 0, len(events))
	var line []byte
	for i := range events {
		line = events[i].AppendJSON(line[:0])
		recs = append(recs, record(&events[i], string(line), now))
	}
	body, err := proto.Marshal(&collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
		Resource:  o.resource,
		ScopeLogs: []*logspb.ScopeLogs{{Scope: o.scope, LogRecords: recs}},
	}}})
	if err != nil {
		return fmt.Errorf("export: otlp: encode: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("export: otlp: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := o.client.Do(req)
	if err != nil {
		return fmt.Errorf("export: otlp: %w", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxOTLPResponse))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("export: otlp: the collector answered HTTP %d", resp.StatusCode)
	}
	var out collogspb.ExportLogsServiceResponse
	if err := proto.Unmarshal(answer, &out); err == nil {
		if ps := out.GetPartialSuccess(); ps.GetRejectedLogRecords() > 0 {
			// The collector will not take them on a retry either (OTLP:
			// partial success is not retryable); say so, do not loop.
			o.log.Warn("audit export: the collector rejected some log records", "rejected", ps.GetRejectedLogRecords(),
				"events", len(events))
		}
	}
	return nil
}

// Close implements Sink.
func (o *OTLP) Close() error {
	o.client.CloseIdleConnections()
	return nil
}

// record maps one event to a log record.
func record(e *store.Event, line string, observed uint64) *logspb.LogRecord {
	sev, sevText := logspb.SeverityNumber_SEVERITY_NUMBER_INFO, "INFO"
	if e.Outcome == store.OutcomeFailure {
		sev, sevText = logspb.SeverityNumber_SEVERITY_NUMBER_WARN, "WARN"
	}
	const p = "chainbroker.audit."
	attrs := []*commonpb.KeyValue{str(p+"id", e.ID), str(p+"outcome", e.Outcome.String())}
	for _, kv := range [...]struct{ k, v string }{
		{"reason", e.Reason}, {"caller", e.Caller}, {"subject", e.Subject}, {"unverified_subject", e.UnverifiedSubject},
		{"source_domain", e.SourceDomain}, {"target_domain", e.TargetDomain}, {"mode", e.Mode},
		{"mapped_subject", e.MappedSubject}, {"actor", e.Actor}, {"assertion_issuer", e.AssertionIssuer},
		{"subject_token_hash", e.SubjectTokenHash}, {"assertion_jti_hash", e.AssertionJTIHash},
		{"actor_token_hash", e.ActorTokenHash}, {"upstream_error", e.UpstreamError},
	} {
		if kv.v != "" {
			attrs = append(attrs, str(p+kv.k, kv.v))
		}
	}
	if len(e.Scopes) > 0 {
		attrs = append(attrs, strs(p+"scopes", e.Scopes))
	}
	if e.SubjectVerified {
		attrs = append(attrs, &commonpb.KeyValue{Key: p + "subject_verified", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}}})
	}
	r := &logspb.LogRecord{
		ObservedTimeUnixNano: observed,
		SeverityNumber:       sev,
		SeverityText:         sevText,
		EventName:            EventName,
		Body:                 &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: line}},
		Attributes:           attrs,
	}
	if !e.Time.IsZero() && e.Time.UnixNano() > 0 {
		r.TimeUnixNano = uint64(e.Time.UnixNano())
	}
	return r
}

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func strs(k string, vs []string) *commonpb.KeyValue {
	arr := make([]*commonpb.AnyValue, 0, len(vs))
	for _, v := range vs {
		arr = append(arr, &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}})
	}
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: arr}}}}
}

var _ Sink = (*OTLP)(nil)
