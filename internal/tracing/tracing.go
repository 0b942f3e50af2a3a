// Package tracing sets up OpenTelemetry tracing: off by default, or
// exporting spans over OTLP (HTTP or gRPC) when the standard OTEL_*
// environment variables or berth's "tracing" setting ask for it. It also
// serves the server span of each HTTP request, with W3C trace context
// taken from the incoming request.
//
// Other packages receive the Provider's trace.TracerProvider explicitly
// (nothing is registered globally), so tests can run several servers in
// one process.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ScopeName is the instrumentation scope of berth's spans.
const ScopeName = "github.com/berth-registry/berth"

// Modes of the "tracing" setting.
const (
	// ModeAuto exports when the OTEL_* environment asks for it (an OTLP
	// endpoint or OTEL_TRACES_EXPORTER=otlp), over the protocol it names.
	ModeAuto = "auto"
	// ModeOff never exports, whatever the environment says.
	ModeOff = "off"
	// ModeOTLPHTTP and ModeOTLPGRPC export over OTLP/HTTP or OTLP/gRPC to
	// the endpoint of the OTEL_EXPORTER_OTLP_* variables (or the OTLP
	// default on localhost).
	ModeOTLPHTTP = "otlp-http"
	ModeOTLPGRPC = "otlp-grpc"
)

// Config says how to set tracing up.
type Config struct {
	// Mode is one of the Mode constants; "" is ModeAuto.
	Mode string
	// ServiceVersion is reported as service.version.
	ServiceVersion string
	// Getenv reads the environment; nil is os.Getenv. (The exporters
	// themselves read OTEL_EXPORTER_OTLP_* from the process environment.)
	Getenv func(string) string
	// Log receives the exporters' errors; nil discards them.
	Log *slog.Logger
}

// Provider is the tracing of one process: off (a no-op tracer, no cost
// beyond an interface call) or an SDK tracer provider exporting OTLP.
type Provider struct {
	sdk        *sdktrace.TracerProvider // nil when off
	tp         trace.TracerProvider
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
	// Protocol is the OTLP protocol in use ("" when off).
	Protocol string
}

// Off returns a provider that records nothing.
func Off() *Provider {
	tp := noop.NewTracerProvider()
	return &Provider{tp: tp, tracer: tp.Tracer(ScopeName), propagator: propagation.TraceContext{}}
}

// Setup builds the tracing cfg and the environment ask for. Bad values
// (an unknown mode, protocol, exporter or sampler, an endpoint that is not
// a URL) are errors naming the variable. Call Shutdown at exit to flush
// the spans still queued.
func Setup(ctx context.Context, cfg Config) (*Provider, error) {
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	protocol, err := choose(cfg.Mode, getenv)
	if err != nil {
		return nil, err
	}
	if protocol == "" {
		return Off(), nil
	}
	var exp sdktrace.SpanExporter
	switch protocol {
	case protocolGRPC:
		exp, err = otlptracegrpc.New(ctx)
	default: // http/protobuf or http/json: the exporter reads which
		exp, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter (%s): %w", protocol, err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "berth"), attribute.String("service.version", cfg.ServiceVersion)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES override
		resource.WithTelemetrySDK(),
		resource.WithHost(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	if cfg.Log != nil {
		log := cfg.Log
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing", "err", err) }))
	}
	// The sampler is parent-based always-on unless OTEL_TRACES_SAMPLER
	// says otherwise (the SDK reads it); the batch processor reads
	// OTEL_BSP_*.
	sdk := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return newProvider(sdk, cfg.ServiceVersion, protocol), nil
}

// newProvider returns the Provider of an SDK tracer provider.
func newProvider(sdk *sdktrace.TracerProvider, version, protocol string) *Provider {
	return &Provider{
		sdk:        sdk,
		tp:         sdk,
		tracer:     sdk.Tracer(ScopeName, trace.WithInstrumentationVersion(version)),
		propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		Protocol:   protocol,
	}
}

// Enabled reports whether spans are exported.
func (p *Provider) Enabled() bool { return p.sdk != nil }

// TracerProvider returns the provider other packages start spans with: a
// no-op one when tracing is off.
func (p *Provider) TracerProvider() trace.TracerProvider { return p.tp }

// Tracer returns berth's tracer.
func (p *Provider) Tracer() trace.Tracer { return p.tracer }

// Propagator returns the propagator of incoming trace context (W3C
// traceparent/tracestate and baggage).
func (p *Provider) Propagator() propagation.TextMapPropagator { return p.propagator }

// Shutdown exports the spans still queued and stops the exporter.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p.sdk == nil {
		return nil
	}
	if err := p.sdk.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: shut down: %w", err)
	}
	return nil
}
