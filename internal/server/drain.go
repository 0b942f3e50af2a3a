package server

import "time"

// drain is the first step of a graceful shutdown. From now on /readyz
// answers 503 and every response closes its connection (no keep-alive),
// so that clients open new connections, which load balancers and
// Kubernetes Services send elsewhere once they have seen the readiness
// change. For shutdown_delay berth goes on serving, new connections
// included: a Service's endpoints and kube-proxy's rules lag behind the
// Pod's termination by a moment, and connections made in that moment
// would otherwise be refused. Then Shutdown stops accepting.
func (s *Server) drain() {
	s.draining.Store(true)
	s.http.SetKeepAlivesEnabled(false)
	if d := s.cfg.ShutdownDelay; d > 0 {
		s.log.Info("draining: not ready, still serving", "shutdown_delay", d)
		time.Sleep(d)
	}
}
