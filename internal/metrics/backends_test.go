package metrics

import (
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestS3Metrics(t *testing.T) {
	m := NewS3()
	m.Observe("PutObject", "ok", 20*time.Millisecond)
	m.Observe("PutObject", "ok", 30*time.Millisecond)
	m.Observe("HeadObject", "not_found", time.Millisecond)
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.Collectors()...)
	want := `
# HELP berth_s3_requests_total Requests sent to S3 (each attempt), by operation (PutObject, HeadObject...) and outcome (ok, not_found, precondition_failed, client_error, throttled, server_error, network_error, canceled).
# TYPE berth_s3_requests_total counter
berth_s3_requests_total{operation="HeadObject",outcome="not_found"} 1
berth_s3_requests_total{operation="PutObject",outcome="ok"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "berth_s3_requests_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.duration); n != 2 {
		t.Errorf("%d duration series, want 2 (one per operation)", n)
	}
}

func TestMetadataMetrics(t *testing.T) {
	m := NewMetadataTx()
	m.TxDone("committed", time.Millisecond)
	m.TxRetried()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.Collectors()...)
	if got := testutil.ToFloat64(m.retries); got != 1 {
		t.Errorf("retries = %v", got)
	}
	if n := testutil.CollectAndCount(m.duration); n != 2 {
		t.Errorf("%d duration series, want 2 (committed, rolled_back, exported from the start)", n)
	}

	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Skip(err) // no driver linked in this package's test
	}
	defer db.Close()
	reg = prometheus.NewRegistry()
	reg.MustRegister(DBPools(map[string]*sql.DB{"metadata_read": db, "metadata_write": db})...)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP go_sql_max_open_connections Maximum number of open connections to the database.
# TYPE go_sql_max_open_connections gauge
go_sql_max_open_connections{db_name="metadata_read"} 0
go_sql_max_open_connections{db_name="metadata_write"} 0
`), "go_sql_max_open_connections"); err != nil {
		t.Error(err)
	}
}
