package metrics

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestMethodLabelIsBounded: requests with invented method names, which any
// client may send, add no series of their own (a regression: the raw
// method was the label, so each new name made new series without bound).
func TestMethodLabelIsBounded(t *testing.T) {
	m := New("test")
	h := m.Middleware(func(*http.Request) Classified { return Classified{Route: "other"} },
		http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusMethodNotAllowed) }))
	for i := range 50 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(fmt.Sprintf("X%d", i), "/", nil))
	}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	families, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	methods := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "berth_http_requests_total" {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "method" {
					methods[l.GetValue()] += s.GetCounter().GetValue()
				}
			}
		}
	}
	if len(methods) != 2 || methods["_OTHER"] != 50 || methods["GET"] != 1 {
		t.Fatalf("method label values: %v, want _OTHER: 50 and GET: 1", methods)
	}
}
