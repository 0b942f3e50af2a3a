package audit

import (
	"context"
	"log/slog"
)

// Handler returns a log/slog handler that records every record of level
// Info and above as an entry (see fromRecord for the mapping) and passes
// it, without secret attributes, to the output. The auth service writes
// its audit records through it.
func (l *Log) Handler() slog.Handler { return &handler{log: l, out: l.opts.Out} }

type handler struct {
	log *Log
	out slog.Handler
	// attrs are those of WithAttrs, inside groups of WithGroup before
	// them; groups are the open groups.
	attrs  []slog.Attr
	groups []string
}

func (h *handler) Enabled(_ context.Context, level slog.Level) bool { return level >= slog.LevelInfo }

// Handle writes r to the output at once and queues its entry.
func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	var own []slog.Attr
	r.Attrs(func(a slog.Attr) bool { own = append(own, a); return true })
	own = scrubAttrs(own)
	var err error
	if h.out != nil && h.out.Enabled(ctx, r.Level) {
		out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
		out.AddAttrs(own...)
		err = h.out.Handle(ctx, out)
	}
	all := append(append([]slog.Attr(nil), h.attrs...), h.nest(own)...)
	h.log.enqueue(fromRecord(r.Time, r.Level, r.Message, all))
	return err
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	attrs = scrubAttrs(attrs)
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), h.nest(attrs)...)
	if h.out != nil {
		c.out = h.out.WithAttrs(attrs)
	}
	return &c
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.groups = append(append([]string(nil), h.groups...), name)
	if h.out != nil {
		c.out = h.out.WithGroup(name)
	}
	return &c
}

// nest puts attrs inside the open groups.
func (h *handler) nest(attrs []slog.Attr) []slog.Attr {
	if len(h.groups) == 0 || len(attrs) == 0 {
		return attrs
	}
	v := slog.GroupValue(attrs...)
	for i := len(h.groups) - 1; i > 0; i-- {
		v = slog.GroupValue(slog.Attr{Key: h.groups[i], Value: v})
	}
	return []slog.Attr{{Key: h.groups[0], Value: v}}
}
