package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/mirror"
	"github.com/berth-registry/berth/internal/registry"
)

// openMirrors loads the mirrors. Downloads go to the blob store's uploads
// when it keeps them as files, else to <data>/mirror-spool, emptied here
// of what a previous run left.
func openMirrors(ctx context.Context, cfg *config.Config, meta *metadata.SQL, svc *registry.Service, log *slog.Logger) (*mirror.Service, error) {
	spool := filepath.Join(cfg.DataDir, "mirror-spool")
	if err := os.RemoveAll(spool); err != nil {
		return nil, fmt.Errorf("clear mirror spool: %w", err)
	}
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return nil, fmt.Errorf("create mirror spool: %w", err)
	}
	ms := mirror.New(meta, svc, spool, log)
	if err := ms.Refresh(ctx); err != nil {
		return nil, fmt.Errorf("read mirrors: %w", err)
	}
	return ms, nil
}

// refreshMirrors reads the mirrors again, for the changes other replicas
// made.
func (s *Server) refreshMirrors(ctx context.Context) {
	if err := s.mirrors.Refresh(ctx); err != nil && ctx.Err() == nil {
		s.log.Error("reading mirrors failed", "err", err)
	}
}
