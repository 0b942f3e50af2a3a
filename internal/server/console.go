package server

import (
	"net/http"

	"github.com/berth-registry/berth/internal/console"
)

// mountConsole serves the web console at / (ag is nil without
// authentication: the console then shows everything to everyone, as the
// API does).
func (s *Server) mountConsole(mux *http.ServeMux, ag *guard) error {
	opts := console.Options{Registry: s.svc, Store: s.meta, Log: s.log, RunGC: s.gc.RunWith, SelfAddr: func() string {
		if a := s.selfAddr.Load(); a != nil {
			return *a
		}
		return ""
	}}
	if ag != nil {
		opts.Accounts = ag.auth
		opts.ClientIP = ag.origin.clientIP
	}
	h, err := console.New(opts)
	if err != nil {
		return err
	}
	h.Register(mux)
	return nil
}
