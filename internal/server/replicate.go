package server

import (
	"net/http"

	"github.com/berth-registry/berth/internal/adminapi"
	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/replicate"
	"github.com/berth-registry/berth/internal/replicateapi"
)

// setupReplication builds replication: the webhook dispatcher hands the
// deliveries of replication rules (endpoints of format "replicate") to it,
// and Serve runs its pull schedules; on an open registry its API is
// served here, without authentication (with auth, registerReplication
// adds it to the admin API).
func (s *Server) setupReplication(mux *http.ServeMux) *replicate.Service {
	rep := replicate.New(s.meta, s.svc, s.hooks, replicate.Options{UserAgent: "berth-replicate/" + s.cfg.Version}, s.log)
	s.hooks.SetReplicator(rep)
	if s.cfg.Auth != "token" {
		replicateapi.Routes(rep).ServeOpen(mux, s.log)
	}
	return rep
}

// registerReplication adds the replication API to the admin API (admins
// only) and records rule changes in the audit log.
func (s *Server) registerReplication(admin *adminapi.Handler, rep *replicate.Service, ag *guard) {
	replicateapi.Routes(rep).Register(admin)
	rep.OnChange(func(actor, action, ns, name string) {
		ag.audit.Record(audit.Entry{Actor: actor, Action: action, Namespace: ns, Target: name})
	})
}
