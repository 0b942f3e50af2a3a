package server

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auditapi"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/config"
)

// auditStore is what the shared audit log needs of the metadata store.
type auditStore interface {
	audit.Store
	auditapi.Store
}

// openAudit starts the audit log: entries go to the metadata store
// (shared by replicas, pruned after cfg.AuditRetention) and, as
// cfg.AuditLog says, to <data_dir>/audit.log, stdout, or nowhere else.
// The closer writes what is queued; a failure to write then is logged,
// not returned, so that it does not fail a shutdown.
func openAudit(cfg *config.Config, acc auth.Store, log *slog.Logger) (*audit.Log, auditStore, func() error, error) {
	store, ok := acc.(auditStore)
	if !ok {
		return nil, nil, nil, fmt.Errorf("audit log: the metadata store %T cannot keep audit entries", acc)
	}
	var out slog.Handler
	var file *os.File
	switch cfg.AuditLog {
	case "", "file":
		var err error
		file, err = os.OpenFile(filepath.Join(cfg.DataDir, "audit.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("open audit log: %w", err)
		}
		out = slog.NewJSONHandler(file, nil)
	case "stdout":
		out = slog.NewJSONHandler(os.Stdout, nil)
	case "none":
	default:
		return nil, nil, nil, fmt.Errorf("audit_log %q: want file, stdout or none", cfg.AuditLog)
	}
	if out != nil {
		out = out.WithAttrs([]slog.Attr{slog.String("log", "audit")})
	}
	l := audit.New(store, audit.Options{Out: out, Replica: replicaName(), Log: log.With("component", "audit"), Retention: cfg.AuditRetention})
	closer := func() error {
		_ = l.Close() // logged by the audit log
		if file != nil {
			return file.Close()
		}
		return nil
	}
	return l, store, closer, nil
}

// replicaName names this process in audit entries: its host name (a
// pod's name on Kubernetes).
func replicaName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "unknown"
	}
	return h
}
