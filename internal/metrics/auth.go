package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-registry/berth/internal/auth"
)

// Auth returns collectors of the auth service's running totals: logins by
// outcome, tokens issued and scopes denied.
func Auth(c *auth.Counters) []prometheus.Collector {
	const logins = "Logins (token endpoint, admin API, metrics) by outcome: ok, failed (wrong secret), refused (revoked or expired robot), rate_limited."
	return []prometheus.Collector{
		counter("berth_auth_logins_total", logins, prometheus.Labels{"outcome": "ok"}, c.LoginsOK.Load),
		counter("berth_auth_logins_total", logins, prometheus.Labels{"outcome": "failed"}, c.LoginsFailed.Load),
		counter("berth_auth_logins_total", logins, prometheus.Labels{"outcome": "refused"}, c.LoginsRefused.Load),
		counter("berth_auth_logins_total", logins, prometheus.Labels{"outcome": "rate_limited"}, c.LoginsRateLimited.Load),
		counter("berth_auth_tokens_issued_total", "Access tokens issued.", nil, c.TokensIssued.Load),
		counter("berth_auth_scopes_denied_total", "Scopes asked for in token requests and not granted.", nil, c.ScopesDenied.Load),
	}
}
