// Package server wires berth together: stores, the registry service, the
// HTTP API, health endpoints, request logging and graceful shutdown.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/berth-registry/berth/internal/adminapi"
	"github.com/berth-registry/berth/internal/api"
	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/gc"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/metrics"
	"github.com/berth-registry/berth/internal/mirror"
	"github.com/berth-registry/berth/internal/mirrorapi"
	"github.com/berth-registry/berth/internal/oidcauth"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/replicate"
	"github.com/berth-registry/berth/internal/retention"
	"github.com/berth-registry/berth/internal/webhook"
	"github.com/berth-registry/berth/internal/webhookapi"
)

// Server is a running berth.
type Server struct {
	cfg  *config.Config
	log  *slog.Logger
	meta *metadata.SQL
	svc  *registry.Service
	http *http.Server
	// stores closes the backends.
	stores *stores
	// closeAudit closes the audit log (nil without auth).
	closeAudit func() error
	gc         *gc.Collector
	// mirrors serves the pull-through caches of upstream registries;
	// replication runs the replication rules.
	mirrors     *mirror.Service
	replication *replicate.Service
	metrics     *metrics.Metrics
	// hooks delivers the webhook outbox; notifier hears of committed
	// events.
	hooks    *webhook.Dispatcher
	notifier *notifier
	// selfAddr is the main listener's address once Serve listens (for the
	// console's probes of this registry).
	selfAddr atomic.Pointer[string]
	// draining is set once SIGTERM arrives: /readyz answers 503 from then.
	draining atomic.Bool
	// storageStats holds the per-namespace metrics, refreshed every
	// statsInterval.
	storageStats *metrics.Storage
}

// lockDataDir takes an exclusive lock on the data directory: the embedded
// database and blob store belong to one process at a time.
func lockDataDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "berth.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data directory %s is in use by another berth process (stop it or pick another --data-dir): %w", dir, err)
	}
	return f, nil
}

// New opens the stores under the data directory and builds the server.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Server, error) {
	st, err := openStores(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	meta, blobs := st.meta, st.blobs
	hooks := webhook.NewDispatcher(meta, webhook.Options{MaxAttempts: cfg.WebhookAttempts, BackoffBase: cfg.WebhookBackoff,
		BackoffMax: cfg.WebhookBackoffMax, UserAgent: "berth-webhook/" + cfg.Version, Exclusive: cfg.Metadata != "postgres"}, log)
	nt := &notifier{hooks: hooks}
	svc := registry.New(meta, blobs, registry.Options{MaxManifestSize: cfg.MaxManifestSize, UploadTTL: cfg.UploadTTL, Locks: st.locks, Redirect: cfg.S3Redirect, GCGrace: cfg.GCGrace,
		MaxUploadSessions: cfg.MaxUploadSessions, Events: nt}, log)
	s := &Server{cfg: cfg, log: log, meta: meta, svc: svc, stores: st, metrics: metrics.New(cfg.Version), hooks: hooks, notifier: nt}
	s.gc = gc.New(meta, blobs, svc.Locks(), cfg.GCGrace, log)
	s.gc.OnRun(s.gcEvent)
	s.metrics.Register(metrics.GC(s.gc.Totals())...)
	s.metrics.Register(st.collectors...) // metadata transactions and pools, S3 requests
	s.metrics.Register(metrics.Webhooks(hooks.Totals())...)
	s.storageStats = metrics.NewStorage(cfg.MaxUploadSessions)
	s.metrics.Register(s.storageStats)
	s.gc.UseRetention(retention.NewPlanner(meta, svc.ImmutableTags), svc.FlushPulls)
	if st.tryRun != nil {
		s.gc.UseRunLock(st.tryRun)
	}
	runGC := s.gc.RunWith
	if s.mirrors, err = openMirrors(ctx, cfg, meta, svc, log); err != nil {
		st.close()
		return nil, err
	}
	s.metrics.Register(metrics.Mirrors(s.mirrors.Totals())...)
	mux := http.NewServeMux()
	rep := s.setupReplication(mux)
	s.replication = rep
	var g api.Guard
	var ag *guard
	if cfg.Auth != "token" {
		// An open registry: anyone may collect garbage, as anyone may delete.
		mux.HandleFunc("POST /api/v1/gc", func(w http.ResponseWriter, r *http.Request) {
			report, err := runGC(r.Context(), gc.Options{DryRun: r.URL.Query().Get("dry_run") == "true"})
			if err != nil {
				http.Error(w, `{"error":"garbage collection failed"}`, http.StatusInternalServerError)
				log.Error("garbage collection failed", "err", err)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(report)
		})
	}
	if cfg.Auth != "token" {
		mirrorapi.Routes(s.mirrors).ServeOpen(mux, log)
		s.fsckRoutes().ServeOpen(mux, log)
	}
	if cfg.Auth == "token" {
		var closeAudit func() error
		var admin *adminapi.Handler
		ag, admin, closeAudit, err = setupAuth(ctx, cfg, meta, log, mux, runGC)
		if err != nil {
			st.close()
			return nil, err
		}
		hookRules := webhook.NewService(meta, ag.auth, hooks)
		hookRules.OnChange(func(actor, action, ns, name string) {
			ag.audit.Record(audit.Entry{Actor: actor, Action: action, Namespace: ns, Target: name})
		})
		webhookapi.Register(admin, hookRules)
		mirrorapi.Routes(s.mirrors).Register(admin)
		s.fsckRoutes().Register(admin)
		s.registerReplication(admin, rep, ag)
		ag.auth.SetAlias(s.mirrors.Alias)
		s.mirrors.UseNamespaces(func(ctx context.Context, actor *auth.Principal, ns string) error {
			if _, err := ag.auth.CreateNamespace(ctx, actor, ns, false); err != nil && !errors.Is(err, auth.ErrExists) {
				return err
			}
			return nil
		})
		s.mirrors.OnChange(func(actor, action, ns, name string) {
			ag.audit.Record(audit.Entry{Actor: actor, Action: action, Namespace: ns, Target: name})
		})
		ag.auth.OnChange(s.accountEvent)
		nt.audit = ag.audit
		admin.Register(mux)
		g, s.closeAudit = ag, closeAudit
		s.metrics.Register(metrics.Auth(ag.auth.Counters())...)
	}
	var sessions oidcauth.Sessions
	if !cfg.ConsoleOff {
		c, err := s.mountConsole(mux, ag)
		if err != nil {
			st.close()
			return nil, err
		}
		sessions = c
	}
	if ag != nil && ag.oidc != nil {
		oidcauth.NewHandler(oidcauth.Options{Provider: ag.oidc, Accounts: ag.auth, Sessions: sessions,
			BaseURL: ag.origin.baseURL, ClientIP: ag.origin.clientIP, Log: log}).Register(mux)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", s.ready)
	if !cfg.MetricsOff {
		mux.Handle("GET /metrics", s.metricsEndpoint(ag))
	}
	handler := s.instrument(logRequests(log, limitIdleBodies(cfg.BodyTimeout, routeV2(api.New(svc, log, g).WithMirrors(s.mirrors), mux))))
	s.http = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Handler returns the server's root HTTP handler.
func (s *Server) Handler() http.Handler { return s.http.Handler }

// Close releases the stores; use it when the server was not started by Serve.
func (s *Server) Close() error {
	var err error
	if s.closeAudit != nil { // first: its last entries go to the database
		err = s.closeAudit()
	}
	return errors.Join(err, s.stores.close())
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		http.Error(w, "not ready: shutting down", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.svc.Ready(ctx); err != nil {
		http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// Serve listens and serves until ctx is cancelled, then shuts down
// gracefully: in-flight requests get the configured time to finish.
func (s *Server) Serve(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	self := ln.Addr().String()
	s.selfAddr.Store(&self)
	s.log.Info("berth listening", "addr", ln.Addr().String(), "data_dir", s.cfg.DataDir, "tls", s.cfg.TLSCert != "", "auth", s.cfg.Auth)
	if s.cfg.Auth == "none" {
		s.log.Warn("authentication is off: anyone who can reach this address may push, pull and delete")
	}
	go every(ctx, time.Minute, s.expireUploads)
	go every(ctx, time.Hour, s.pruneConsoleSessions)
	go s.hooks.Run(ctx)
	go every(ctx, mirror.RefreshInterval, s.refreshMirrors)
	go every(ctx, replicate.ScheduleTick, s.replication.RunDue) // pull rules' schedules
	go func() {
		s.refreshStats(ctx)
		every(ctx, statsInterval, s.refreshStats)
	}()
	go every(ctx, pullFlushInterval, func(ctx context.Context) {
		if err := s.svc.FlushPulls(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("recording pulls failed", "err", err)
		}
	})
	if s.cfg.GCInterval > 0 {
		go every(ctx, s.cfg.GCInterval, s.gc.RunScheduled)
	}
	if s.cfg.DebugAddr != "" {
		go s.serveDebug()
	}
	if s.cfg.MetricsAddr != "" && !s.cfg.MetricsOff {
		go s.serveMetrics()
	}
	if s.cfg.TLSCert != "" {
		tln, err := newTLSListener(ln, s.cfg.TLSCert, s.cfg.TLSKey, s.log)
		if err != nil {
			ln.Close()
			s.Close()
			return err
		}
		ln = tln
	}
	errc := make(chan error, 1)
	go func() {
		errc <- s.http.Serve(ln)
	}()
	select {
	case err := <-errc:
		s.Close()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.drain()
	s.log.Info("shutting down", "timeout", s.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	err = s.http.Shutdown(sctx)
	if ferr := s.svc.FlushPulls(sctx); ferr != nil {
		s.log.Error("recording pulls failed", "err", ferr)
	}
	if cerr := s.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	s.log.Info("stopped")
	return nil
}

// pullFlushInterval is how often pulls noted in memory are written: one
// transaction for all of them.
const pullFlushInterval = 10 * time.Second

// every runs fn every interval until ctx ends (the background loops:
// upload expiry, pull flushes, scheduled garbage collection).
func every(ctx context.Context, interval time.Duration, fn func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn(ctx)
		}
	}
}

func (s *Server) expireUploads(ctx context.Context) {
	n, err := s.svc.ExpireUploads(ctx)
	if err != nil && ctx.Err() == nil {
		s.log.Error("expiring uploads failed", "err", err)
	} else if n > 0 {
		s.log.Info("expired idle uploads", "count", n)
	}
}

// routeV2 sends every path under /v2 to the registry API unchanged: the API
// validates names itself, and ServeMux would clean or redirect paths with
// dot segments instead of answering NAME_INVALID.
func routeV2(v2, other http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; p == "/v2" || strings.HasPrefix(p, "/v2/") {
			v2.ServeHTTP(w, r)
			return
		}
		other.ServeHTTP(w, r)
	})
}

// serveMetrics serves /metrics, without authentication, on the metrics
// address.
func (s *Server) serveMetrics() {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics.Handler())
	s.serveAux("metrics", s.cfg.MetricsAddr, mux)
}

// serveDebug serves the Go profiler on the debug address.
func (s *Server) serveDebug() {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	s.serveAux("debug", s.cfg.DebugAddr, mux)
}

// serveAux serves an auxiliary listener (metrics, profiling) until the
// process ends.
func (s *Server) serveAux(what, addr string, h http.Handler) {
	s.log.Info(what+" listening", "addr", addr)
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		s.log.Error(what+" listener failed", "err", err)
	}
}

// statsInterval is how often the per-namespace metrics are read from the
// metadata.
const statsInterval = 30 * time.Second

// refreshStats reads the per-namespace metrics.
func (s *Server) refreshStats(ctx context.Context) {
	stats, err := s.meta.NamespaceStats(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("reading namespace statistics failed", "err", err)
		}
		return
	}
	s.storageStats.Set(stats)
}
