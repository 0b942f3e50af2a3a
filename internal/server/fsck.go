package server

import (
	"fmt"
	"net/http"

	"github.com/berth-registry/berth/internal/adminapi"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/blobstore"
	"github.com/berth-registry/berth/internal/fsck"
)

// fsckRoutes serves POST /api/v1/fsck[?repair=true]: the consistency check
// of the blob store against the metadata (package fsck), admins only (or
// anyone on an open registry). Orphans count once older than gc_grace.
func (s *Server) fsckRoutes() adminapi.Routes {
	return adminapi.Routes{"POST /api/v1/fsck": func(_ http.ResponseWriter, r *http.Request, actor *auth.Principal) (int, any, error) {
		if err := auth.MayAdminister(actor, "storage"); err != nil {
			return 0, nil, err
		}
		store, ok := blobstore.Base(s.stores.blobs).(fsck.Store)
		if !ok {
			return 0, nil, fmt.Errorf("%w: this blob store cannot list its blobs", auth.ErrInvalid)
		}
		o := fsck.Options{Repair: r.URL.Query().Get("repair") == "true", Grace: s.cfg.GCGrace}
		report, err := fsck.Check(r.Context(), store, s.meta, s.svc.Locks(), o)
		if err != nil {
			return 0, nil, err
		}
		if o.Repair && len(report.Removed)+len(report.RemovedStrays) > 0 {
			s.log.Info("consistency check removed orphaned blobs and stray objects", "blobs", len(report.Removed),
				"strays", len(report.RemovedStrays), "bytes", report.RemovedBytes)
		}
		return http.StatusOK, report, nil
	}}
}
