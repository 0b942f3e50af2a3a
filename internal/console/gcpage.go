package console

import (
	"errors"
	"net/http"

	"github.com/berth-registry/berth/internal/gc"
	"github.com/berth-registry/berth/internal/metadata"
)

// gcHistory is how many past runs the GC page lists.
const gcHistory = 50

// gcPageData is the GC page's data.
type gcPageData struct {
	Runs []metadata.GCRun
	// Report is the run just made from the page (nil on GET).
	Report  *gc.Report
	Message string
}

// gcPage shows the history of garbage collection runs, and runs one (or
// a dry run) on POST: administrators only, as POST /api/v1/gc.
func (h *Handler) gcPage(w http.ResponseWriter, r *http.Request, v *viewer) error {
	if r.Method == http.MethodPost {
		if err := h.checkChange(r, v); err != nil {
			return err
		}
	}
	if !v.AuthOff() {
		if ok, err := h.requireAdmin(w, r, v); !ok {
			return err
		}
	}
	var d gcPageData
	status := http.StatusOK
	if r.Method == http.MethodPost {
		if h.opts.RunGC == nil {
			return errorf(http.StatusNotFound, "Garbage collection is not available here.")
		}
		rep, err := h.opts.RunGC(h.writeContext(r, v), gc.Options{DryRun: r.PostForm.Get("op") == "dry-run"})
		switch {
		case errors.Is(err, gc.ErrBusy):
			d.Message, status = "A collection is running already (on this or another replica); try again when it ends.", http.StatusConflict
		case err != nil:
			return err
		default:
			d.Report = rep
		}
	}
	runs, err := h.opts.Store.GCRuns(r.Context(), gcHistory)
	if err != nil {
		return err
	}
	d.Runs = runs
	return h.render(w, r, "gc", status, page{Title: "Garbage collection", Viewer: v, Data: d})
}
