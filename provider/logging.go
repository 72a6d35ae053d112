package provider

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-log/tflog"
)

// tflogHandler is a slog.Handler that writes to Terraform's log through
// tflog, so that internal/pve's request log (method, path, status, duration,
// retries) shows with TF_LOG=DEBUG. tflog finds its logger in the context of
// the Terraform request, so the client logs with the request's ctx.
//
// Every string it writes has the secrets it was given replaced by "***", a
// second guard behind internal/pve, which never logs its Authorization
// header.
type tflogHandler struct {
	secrets []string
	attrs   []slog.Attr
	group   string
}

var _ slog.Handler = (*tflogHandler)(nil)

// newTFLogHandler returns a handler that masks secrets (empty ones are
// ignored).
func newTFLogHandler(secrets ...string) *tflogHandler {
	h := &tflogHandler{}
	for _, s := range secrets {
		if s != "" {
			h.secrets = append(h.secrets, s)
		}
	}
	return h
}

// Enabled lets every record through; tflog filters by TF_LOG.
func (h *tflogHandler) Enabled(context.Context, slog.Level) bool { return true }

// Handle writes one record at its level.
func (h *tflogHandler) Handle(ctx context.Context, r slog.Record) error {
	fields := make(map[string]any, len(h.attrs)+r.NumAttrs())
	for _, a := range h.attrs {
		h.add(fields, "", a)
	}
	r.Attrs(func(a slog.Attr) bool {
		h.add(fields, h.group, a)
		return true
	})
	msg := h.mask(r.Message)
	switch {
	case r.Level >= slog.LevelError:
		tflog.Error(ctx, msg, fields)
	case r.Level >= slog.LevelWarn:
		tflog.Warn(ctx, msg, fields)
	case r.Level >= slog.LevelInfo:
		tflog.Info(ctx, msg, fields)
	default:
		tflog.Debug(ctx, msg, fields)
	}
	return nil
}

// WithAttrs returns a handler that adds attrs to every record.
func (h *tflogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), attrs...)
	if h.group != "" {
		for i := len(h.attrs); i < len(c.attrs); i++ {
			c.attrs[i].Key = h.group + c.attrs[i].Key
		}
	}
	return &c
}

// WithGroup returns a handler that prefixes later keys with name.
func (h *tflogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.group = h.group + name + "."
	return &c
}

// add stores a in fields under prefix+key, flattening groups; durations are
// written as "1.5s", strings and errors masked.
func (h *tflogHandler) add(fields map[string]any, prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	key := prefix + a.Key
	switch v.Kind() {
	case slog.KindGroup:
		for _, g := range v.Group() {
			h.add(fields, key+".", g)
		}
	case slog.KindDuration:
		fields[key] = v.Duration().Round(time.Microsecond).String()
	case slog.KindString:
		fields[key] = h.mask(v.String())
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			fields[key] = h.mask(err.Error())
			return
		}
		fields[key] = h.mask(v.String())
	default:
		fields[key] = v.Any()
	}
}

// mask replaces the handler's secrets in s.
func (h *tflogHandler) mask(s string) string {
	for _, secret := range h.secrets {
		s = strings.ReplaceAll(s, secret, "***")
	}
	return s
}
