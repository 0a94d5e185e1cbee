package main

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// tracerFromEnv sets up OpenTelemetry tracing from the standard OTEL_*
// environment variables. Tracing is off unless OTEL_TRACES_EXPORTER is
// "otlp", or it is unset and an OTLP endpoint is configured
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT). The
// exporter speaks OTLP over HTTP and reads its other settings (headers,
// timeout, TLS) from the same variables. It returns nil when off.
func tracerFromEnv(ctx context.Context, env func(string) (string, bool)) (*sdktrace.TracerProvider, error) {
	exporter, _ := env("OTEL_TRACES_EXPORTER")
	_, endpoint := env("OTEL_EXPORTER_OTLP_ENDPOINT")
	_, tracesEndpoint := env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	switch {
	case exporter == "otlp":
	case exporter == "" && (endpoint || tracesEndpoint):
	case exporter == "" || exporter == "none":
		return nil, nil
	default:
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: only otlp and none are supported", exporter)
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "chainbroker")),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
	)
	if err != nil {
		return nil, fmt.Errorf("otel resource: %w", err)
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}
