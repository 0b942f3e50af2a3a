package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-registry/berth/internal/auth"
)

// Auth returns collectors of the auth service's running totals: logins by
// outcome, tokens issued and scopes denied, read at scrape time.
func Auth(c *auth.Counters) []prometheus.Collector {
	login := func(outcome string, v func() int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "berth_auth_logins_total",
			Help:        "Logins (token endpoint, admin API, metrics) by outcome: ok, failed (wrong secret), refused (revoked or expired robot), rate_limited.",
			ConstLabels: prometheus.Labels{"outcome": outcome},
		}, func() float64 { return float64(v()) })
	}
	return []prometheus.Collector{
		login("ok", c.LoginsOK.Load),
		login("failed", c.LoginsFailed.Load),
		login("refused", c.LoginsRefused.Load),
		login("rate_limited", c.LoginsRateLimited.Load),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "berth_auth_tokens_issued_total",
			Help: "Access tokens issued.",
		}, func() float64 { return float64(c.TokensIssued.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "berth_auth_scopes_denied_total",
			Help: "Scopes asked for in token requests and not granted.",
		}, func() float64 { return float64(c.ScopesDenied.Load()) }),
	}
}
