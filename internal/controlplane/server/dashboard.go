package server

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/util/version"
)

//go:embed web
var webFS embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"time": func(t timeLike) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
	"date": func(t timeLike) string { return t.UTC().Format(time.DateOnly) },
	// stamp is a time for a table cell: date and minute, UTC said in
	// the column's header.
	"stamp": func(t timeLike) string { return t.UTC().Format("2006-01-02 15:04") },
	"short": shortPin,
	// text shows stored free text (subjects, app versions, reasons) as
	// ingest would have cleaned it: data stored before a character was
	// refused is shown safe too.
	"text": func(s string) string { return cleanText(s, len(s)) },
	"pct": func(n, total int64) string {
		if total == 0 {
			return "0%"
		}
		return fmt.Sprintf("%.0f%%", 100*float64(n)/float64(total))
	},
}).ParseFS(webFS, "web/*.html"))

// timeLike is a time.Time or an api.Time, for the templates.
type timeLike interface{ UTC() time.Time }

const (
	sessionCookie   = "rampart_session"
	sessionLifetime = 12 * time.Hour
	// contentSecurityPolicy allows nothing but this origin's stylesheet and
	// icon: the dashboard runs no script at all.
	contentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

func (s *Server) dashboardRoutes(mux *http.ServeMux) {
	csrf := http.NewCrossOriginProtection()
	mux.Handle("GET /{$}", s.handle(s.dashboard))
	mux.Handle("GET /reports/{id}", s.handle(s.groupPage))
	mux.Handle("GET /ct", s.handle(s.ctPage))
	mux.Handle("GET /export/reports.csv", s.handle(s.exportCSV))
	mux.Handle("GET /export/reports.json", s.handle(s.exportJSON))
	mux.Handle("GET /export/summary.json", s.handle(s.exportSummary))
	mux.Handle("GET /login", s.handle(s.loginPage))
	mux.Handle("POST /login", csrf.Handler(s.handle(s.login)))
	mux.Handle("POST /logout", csrf.Handler(s.handle(s.logout)))
	mux.Handle("GET /assets/{file}", s.handle(s.asset))
	mux.Handle("GET /favicon.ico", http.RedirectHandler("/assets/icon.svg", http.StatusMovedPermanently))
}

func pageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "text/html; charset=utf-8")
}

func (s *Server) render(w http.ResponseWriter, code int, name string, data any) error {
	var b bytes.Buffer
	if err := pages.ExecuteTemplate(&b, name, data); err != nil {
		return err
	}
	pageHeaders(w)
	w.WriteHeader(code)
	_, err := w.Write(b.Bytes())
	return err
}

func (s *Server) asset(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("file")
	types := map[string]string{"style.css": "text/css; charset=utf-8", "icon.svg": "image/svg+xml"}
	ct, ok := types[name]
	if !ok {
		return httpError(http.StatusNotFound, "no such asset")
	}
	data, err := webFS.ReadFile("web/" + name)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(data)
	return nil
}

// Sessions are stateless: "expiry.mac", the MAC keyed by a key derived
// from the admin token, so that changing the token ends every session and
// several instances accept each other's cookies.
func (s *Server) newSession() string {
	exp := strconv.FormatInt(s.now().Add(sessionLifetime).Unix(), 10)
	return exp + "." + s.sessionMAC(exp)
}

func (s *Server) sessionMAC(exp string) string {
	m := hmac.New(sha256.New, s.cookieKY)
	io.WriteString(m, exp)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (s *Server) sessionOK(r *http.Request) bool {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return false
	}
	exp, mac, ok := strings.Cut(c.Value, ".")
	if !ok || !hmac.Equal([]byte(mac), []byte(s.sessionMAC(exp))) {
		return false
	}
	t, err := strconv.ParseInt(exp, 10, 64)
	return err == nil && s.now().Unix() < t
}

type loginData struct {
	Error   string
	Version string
	Hint    string
}

func (s *Server) loginData(errMsg string) loginData {
	hint := s.cfg.AdminTokenHint
	if hint == "" {
		hint = "in the file admin-token in rampart serve's data directory, or in $RAMPART_ADMIN_TOKEN"
	}
	return loginData{Error: errMsg, Version: version.Get(), Hint: hint}
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) error {
	return s.render(w, http.StatusOK, "login.html", s.loginData(""))
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	if err := s.authBlocked(r); err != nil {
		return err
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		return httpError(http.StatusBadRequest, "malformed form")
	}
	if !s.tokenOK(r, r.PostForm.Get("token")) {
		if err := s.authFailure(r); err != nil {
			return err
		}
		return s.render(w, http.StatusUnauthorized, "login.html", s.loginData("That is not the admin token."))
	}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: s.newSession(), Path: "/", MaxAge: int(sessionLifetime / time.Second),
		HttpOnly: true, Secure: s.cfg.SecureCookies, SameSite: http.SameSiteStrictMode,
	})
	http.Redirect(w, r, "/", http.StatusSeeOther)
	return nil
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) error {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.cfg.SecureCookies, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
	return nil
}

// chart is a bar chart of reports over time, laid out here so that the
// page needs no script: the template only draws rectangles.
type chart struct {
	Width, Height int
	Bars          []bar
	Ticks         []tick // y axis
	Labels        []tick // x axis
	Max           int64
	Empty         bool
}

type bar struct {
	X, Y, W, H float64
	Title      string
}

type tick struct {
	X, Y   float64
	Label  string
	Anchor string // text-anchor: start, middle or end
}

func newChart(tl []store.Bucket, width time.Duration) chart {
	const (
		w, h                 = 960, 240
		left, right, top, bt = 48, 8, 12, 28
	)
	c := chart{Width: w, Height: h}
	for _, b := range tl {
		c.Max = max(c.Max, b.Reports)
	}
	c.Empty = c.Max == 0
	scale := niceCeil(c.Max)
	plotW, plotH := float64(w-left-right), float64(h-top-bt)
	step := plotW / float64(max(len(tl), 1))
	format := "15:04"
	if width >= 24*time.Hour {
		format = "Jan 2"
	} else if width >= 3*time.Hour {
		format = "Jan 2 15:04"
	}
	every := max(1, len(tl)/8)
	for i, b := range tl {
		bh := plotH * float64(b.Reports) / float64(scale)
		x := float64(left) + float64(i)*step
		c.Bars = append(c.Bars, bar{X: x + step*0.1, Y: float64(top) + plotH - bh, W: step * 0.8, H: bh,
			Title: fmt.Sprintf("%s: %d report(s)", b.Start.UTC().Format("2006-01-02 15:04 UTC"), b.Reports)})
		if i%every == 0 {
			label := b.Start.UTC().Format(format)
			lx, anchor := x+step/2, "middle"
			// Keep the label inside the chart: near an edge, anchor it
			// there instead of at its middle.
			half := labelWidth(label) / 2
			switch {
			case lx+half > w:
				lx, anchor = w, "end"
			case lx-half < 0:
				lx, anchor = 0, "start"
			}
			c.Labels = append(c.Labels, tick{X: lx, Y: float64(h - 8), Label: label, Anchor: anchor})
		}
	}
	for i := int64(0); i <= 4; i++ {
		v := scale * i / 4
		c.Ticks = append(c.Ticks, tick{X: left - 6, Y: float64(top) + plotH - plotH*float64(i)/4 + 4, Label: strconv.FormatInt(v, 10)})
	}
	return c
}

// labelWidth estimates the width of a tick label in the chart's units
// (11 px text, about 0.62 em per character, with a margin).
func labelWidth(s string) float64 { return float64(len(s))*7 + 4 }

// niceCeil rounds n up to 4, 8, 20, 40, 80, 200, ... so that axis ticks
// at quarters are whole numbers.
func niceCeil(n int64) int64 {
	for base := int64(1); ; base *= 10 {
		for _, m := range []int64{4, 8, 20} {
			if n <= m*base {
				return m * base
			}
		}
	}
}

// shortPin abbreviates "sha256/abcdef...=" for the recent reports table;
// the full pin is in the title attribute, and in full, to copy, in the
// Unexpected keys table and on the group's page.
func shortPin(p string) string {
	if len(p) > 24 {
		return p[:21] + "…"
	}
	return p
}
