package tracing

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// OTLP protocols, as OTEL_EXPORTER_OTLP_PROTOCOL names them.
const (
	protocolHTTPProtobuf = "http/protobuf"
	protocolHTTPJSON     = "http/json"
	protocolGRPC         = "grpc"
)

// choose decides from the mode and the environment whether to export and
// over which OTLP protocol ("" is off).
func choose(mode string, getenv func(string) string) (string, error) {
	env := func(k string) string { return strings.TrimSpace(getenv(k)) }
	switch mode {
	case "", ModeAuto, ModeOff, ModeOTLPHTTP, ModeOTLPGRPC:
	default:
		return "", fmt.Errorf("tracing: want one of %s, %s, %s or %s, got %q", ModeAuto, ModeOff, ModeOTLPHTTP, ModeOTLPGRPC, mode)
	}
	if mode == ModeOff {
		return "", nil
	}
	if v := env("OTEL_SDK_DISABLED"); v != "" {
		disabled, err := strconv.ParseBool(v)
		if err != nil {
			return "", fmt.Errorf("tracing: OTEL_SDK_DISABLED=%q: want true or false", v)
		}
		if disabled {
			return "", nil
		}
	}
	exporter := strings.ToLower(env("OTEL_TRACES_EXPORTER"))
	switch exporter {
	case "", "otlp":
	case "none":
		return "", nil
	default:
		return "", fmt.Errorf("tracing: OTEL_TRACES_EXPORTER=%q: berth exports only \"otlp\" (or \"none\")", exporter)
	}
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		if v := env(k); v != "" {
			if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return "", fmt.Errorf("tracing: %s=%q: want a URL such as http://collector:4318", k, v)
			}
		}
	}
	if mode == "" || mode == ModeAuto {
		if env("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" && exporter != "otlp" {
			return "", nil
		}
	}
	if err := checkSampler(env("OTEL_TRACES_SAMPLER"), env("OTEL_TRACES_SAMPLER_ARG")); err != nil {
		return "", err
	}
	switch mode {
	case ModeOTLPHTTP:
		if env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") == protocolHTTPJSON || env("OTEL_EXPORTER_OTLP_PROTOCOL") == protocolHTTPJSON {
			return protocolHTTPJSON, nil
		}
		return protocolHTTPProtobuf, nil
	case ModeOTLPGRPC:
		return protocolGRPC, nil
	}
	key, protocol := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		key, protocol = "OTEL_EXPORTER_OTLP_PROTOCOL", env("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch protocol {
	case "":
		return protocolHTTPProtobuf, nil
	case protocolHTTPProtobuf, protocolHTTPJSON, protocolGRPC:
		return protocol, nil
	}
	return "", fmt.Errorf("tracing: %s=%q: want %s, %s or %s", key, protocol, protocolHTTPProtobuf, protocolHTTPJSON, protocolGRPC)
}

// checkSampler validates OTEL_TRACES_SAMPLER and its argument, which the
// SDK reads itself but would only log about.
func checkSampler(sampler, arg string) error {
	switch strings.ToLower(sampler) {
	case "", "always_on", "always_off", "parentbased_always_on", "parentbased_always_off":
		return nil
	case "traceidratio", "parentbased_traceidratio":
		if arg == "" {
			return nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return fmt.Errorf("tracing: OTEL_TRACES_SAMPLER_ARG=%q: want a ratio between 0 and 1", arg)
		}
		return nil
	}
	return fmt.Errorf("tracing: OTEL_TRACES_SAMPLER=%q: want always_on, always_off, traceidratio or their parentbased_ forms", sampler)
}
