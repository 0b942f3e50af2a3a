package server

import (
	"context"
	"net/http"
	"time"

	"github.com/berth-registry/berth/internal/console"
)

// mountConsole serves the web console at / (ag is nil without
// authentication: the console then shows everything to everyone, as the
// API does).
func (s *Server) mountConsole(mux *http.ServeMux, ag *guard) (*console.Handler, error) {
	opts := console.Options{Registry: s.svc, Store: s.meta, Log: s.log, RunGC: s.gc.RunWith, SelfAddr: func() string {
		if a := s.selfAddr.Load(); a != nil {
			return *a
		}
		return ""
	}}
	if ag != nil {
		opts.Accounts = ag.auth
		opts.ClientIP = ag.origin.clientIP
		if ag.oidc != nil {
			opts.SSOName = s.cfg.OIDC.Name
		}
	}
	h, err := console.New(opts)
	if err != nil {
		return nil, err
	}
	h.Register(mux)
	return h, nil
}

// pruneConsoleSessions deletes the console sessions that expired.
func (s *Server) pruneConsoleSessions(ctx context.Context) {
	if n, err := s.meta.PruneConsoleSessions(ctx, time.Now()); err != nil && ctx.Err() == nil {
		s.log.Error("pruning console sessions failed", "err", err)
	} else if n > 0 {
		s.log.Debug("pruned console sessions", "count", n)
	}
}
