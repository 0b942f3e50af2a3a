package tracing

import (
	"context"
	"strings"
	"testing"
)

func envOf(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestChoose(t *testing.T) {
	const ep = "http://collector:4318"
	for _, c := range []struct {
		name, mode string
		env        []string
		want       string // protocol, "" for off
		err        string // part of the error, "" for none
	}{
		{name: "nothing set", want: ""},
		{name: "auto, nothing set", mode: ModeAuto, want: ""},
		{name: "endpoint", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", ep}, want: protocolHTTPProtobuf},
		{name: "traces endpoint", env: []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ep + "/v1/traces"}, want: protocolHTTPProtobuf},
		{name: "exporter otlp without endpoint", env: []string{"OTEL_TRACES_EXPORTER", "otlp"}, want: protocolHTTPProtobuf},
		{name: "grpc", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"}, want: protocolGRPC},
		{name: "traces protocol wins", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", ep, "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"}, want: protocolHTTPJSON},
		{name: "off wins over the environment", mode: ModeOff, env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", ep}, want: ""},
		{name: "off ignores bad values", mode: ModeOff, env: []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon"}, want: ""},
		{name: "sdk disabled", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", ep, "OTEL_SDK_DISABLED", "true"}, want: ""},
		{name: "sdk disabled beats the setting", mode: ModeOTLPHTTP, env: []string{"OTEL_SDK_DISABLED", "TRUE"}, want: ""},
		{name: "exporter none", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", ep, "OTEL_TRACES_EXPORTER", "none"}, want: ""},
		{name: "setting otlp-http", mode: ModeOTLPHTTP, want: protocolHTTPProtobuf},
		{name: "setting otlp-grpc beats the protocol variable", mode: ModeOTLPGRPC, env: []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"}, want: protocolGRPC},
		{name: "sampler ratio", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", ep, "OTEL_TRACES_SAMPLER", "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG", "0.25"}, want: protocolHTTPProtobuf},

		{name: "bad mode", mode: "zipkin", err: `tracing: want one of auto, off, otlp-http or otlp-grpc, got "zipkin"`},
		{name: "bad protocol", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", ep, "OTEL_EXPORTER_OTLP_PROTOCOL", "udp"}, err: `OTEL_EXPORTER_OTLP_PROTOCOL="udp": want http/protobuf, http/json or grpc`},
		{name: "bad traces protocol", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", ep, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "thrift"}, err: `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="thrift"`},
		{name: "endpoint without scheme", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"}, err: `OTEL_EXPORTER_OTLP_ENDPOINT="collector:4318": want a URL such as http://collector:4318`},
		{name: "traces endpoint not a URL", env: []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://"}, err: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://"`},
		{name: "unsupported exporter", env: []string{"OTEL_TRACES_EXPORTER", "zipkin"}, err: `OTEL_TRACES_EXPORTER="zipkin": berth exports only "otlp"`},
		{name: "bad sdk disabled", env: []string{"OTEL_SDK_DISABLED", "maybe"}, err: `OTEL_SDK_DISABLED="maybe": want true or false`},
		{name: "bad sampler", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", ep, "OTEL_TRACES_SAMPLER", "sometimes"}, err: `OTEL_TRACES_SAMPLER="sometimes"`},
		{name: "bad ratio", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", ep, "OTEL_TRACES_SAMPLER", "traceidratio", "OTEL_TRACES_SAMPLER_ARG", "2"}, err: `OTEL_TRACES_SAMPLER_ARG="2": want a ratio between 0 and 1`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := choose(c.mode, envOf(c.env...))
			switch {
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Fatalf("choose: error %v, want one containing %q", err, c.err)
			case c.err == "" && err != nil:
				t.Fatalf("choose: %v", err)
			case got != c.want:
				t.Fatalf("choose = %q, want %q", got, c.want)
			}
		})
	}
}

// TestSetup checks what Setup builds: off without configuration, on with
// an endpoint (the exporter connects lazily), an error for bad values.
func TestSetup(t *testing.T) {
	ctx := context.Background()
	off, err := Setup(ctx, Config{Getenv: envOf()})
	if err != nil {
		t.Fatal(err)
	}
	if off.Enabled() || off.Protocol != "" {
		t.Errorf("tracing on without configuration (protocol %q)", off.Protocol)
	}
	if _, span := off.Tracer().Start(ctx, "x"); span.IsRecording() {
		t.Errorf("an off provider records spans")
	}
	if err := off.Shutdown(ctx); err != nil {
		t.Errorf("shutting down an off provider: %v", err)
	}

	on, err := Setup(ctx, Config{Mode: ModeOTLPHTTP, ServiceVersion: "test", Getenv: envOf()})
	if err != nil {
		t.Fatal(err)
	}
	if !on.Enabled() || on.Protocol != protocolHTTPProtobuf {
		t.Errorf("otlp-http: enabled %v, protocol %q", on.Enabled(), on.Protocol)
	}
	if _, span := on.Tracer().Start(ctx, "x"); !span.IsRecording() {
		t.Errorf("an exporting provider does not record a root span")
	}
	if err := on.Shutdown(ctx); err != nil {
		t.Logf("shutdown (nothing listens on the default endpoint): %v", err)
	}

	grpc, err := Setup(ctx, Config{Mode: ModeOTLPGRPC, Getenv: envOf()})
	if err != nil {
		t.Fatal(err)
	}
	if !grpc.Enabled() || grpc.Protocol != protocolGRPC {
		t.Errorf("otlp-grpc: enabled %v, protocol %q", grpc.Enabled(), grpc.Protocol)
	}
	_ = grpc.Shutdown(ctx)

	if _, err := Setup(ctx, Config{Getenv: envOf("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost")}); err == nil ||
		!strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_ENDPOINT") {
		t.Errorf("Setup with a bad endpoint: %v, want an error naming the variable", err)
	}
}
