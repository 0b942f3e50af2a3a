package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-registry/berth/internal/webhook"
)

// Webhooks returns collectors of the webhook dispatcher's totals and of the
// outbox's counts (as the dispatcher last read them, every few seconds).
func Webhooks(t *webhook.Totals) []prometheus.Collector {
	const attempts = "Webhook delivery attempts since the process started, by outcome (failed includes those that made a delivery dead)."
	const queued = "Webhook deliveries in the outbox by state, shared by replicas: pending (not delivered yet) and dead (gave up; berth webhook redeliver)."
	gauge := func(state string, v func() int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "berth_webhook_deliveries", Help: queued,
			ConstLabels: prometheus.Labels{"state": state}}, func() float64 { return float64(v()) })
	}
	return []prometheus.Collector{
		counter("berth_webhook_attempts_total", attempts, prometheus.Labels{"outcome": "delivered"}, t.Delivered.Load),
		counter("berth_webhook_attempts_total", attempts, prometheus.Labels{"outcome": "failed"}, t.Failed.Load),
		counter("berth_webhook_dead_total", "Webhook deliveries this replica gave up on since the process started.", nil, t.Dead.Load),
		gauge("pending", t.Pending.Load),
		gauge("dead", t.DeadQueued.Load),
	}
}
