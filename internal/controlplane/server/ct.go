package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"github.com/rampartsec/rampart/ct"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/util/version"
)

// CTView is what the dashboard shows of the Certificate Transparency
// monitor (ctwatch.Watcher).
type CTView interface {
	Status() []ct.LogStatus
	Certificates(ctx context.Context, f store.CTFilter) ([]store.CTCertificate, error)
}

// ctCert is a certificate as the CT view shows it: with the failure
// reports that name its key.
type ctCert struct {
	store.CTCertificate
	// Finding is the finding's JSON, read back for the log and index.
	Log       string
	Index     int64
	Precert   bool
	Rules     []ctRule
	Clients   int64 // distinct clients whose failure reports name this key
	Reports   int64
	ReportsAt string // the dashboard filtered by this key
}

type ctRule struct {
	Rule, Mode, Class, Pin, Role string
}

type ctData struct {
	Version      string
	Now          time.Time
	Configured   bool
	Logs         []ct.LogStatus
	Certificates []ctCert
}

// maxCTRows bounds the certificates shown and listed.
const maxCTRows = 200

func (s *Server) ctCertificates(ctx context.Context) ([]ctCert, error) {
	certs, err := s.cfg.CT.Certificates(ctx, store.CTFilter{Limit: maxCTRows})
	if err != nil {
		return nil, err
	}
	out := make([]ctCert, 0, len(certs))
	for _, c := range certs {
		cc := ctCert{CTCertificate: c}
		var f struct {
			Log     string `json:"log"`
			Index   int64  `json:"index"`
			Precert bool   `json:"precertificate"`
			Rules   []struct {
				Rule  string `json:"rule"`
				Mode  string `json:"mode"`
				Class string `json:"class"`
				Pin   string `json:"pin"`
				Role  string `json:"role"`
			} `json:"rules"`
		}
		if json.Unmarshal(c.Finding, &f) == nil {
			cc.Log, cc.Index, cc.Precert = f.Log, f.Index, f.Precert
			for _, r := range f.Rules {
				cc.Rules = append(cc.Rules, ctRule{r.Rule, r.Mode, r.Class, r.Pin, r.Role})
			}
		}
		if c.SPKI != "" && (c.Class == ct.Rogue || c.Class == ct.Rollover) {
			// The key a rogue certificate carries is the key pinned
			// clients report as served: count them.
			tallies, err := s.st.Reports().Count(ctx, store.ReportFilter{ServedPin: c.SPKI}, store.ByServedPin)
			if err != nil {
				return nil, err
			}
			for _, t := range tallies {
				cc.Reports += t.Reports
				cc.Clients += t.Clients
			}
			cc.ReportsAt = "/?" + url.Values{"served_pin": {c.SPKI}, "range": {"30d"}}.Encode()
		}
		out = append(out, cc)
	}
	return out, nil
}

// ctPage is the dashboard's CT view: the logs and how far the monitor is,
// then the certificates seen, rogue first, each rogue key with the
// clients that reported it.
func (s *Server) ctPage(w http.ResponseWriter, r *http.Request) error {
	if !s.needSession(w, r) {
		return nil
	}
	if err := checkParams(r.URL.Query(), nil); err != nil {
		return s.pageError(w, err)
	}
	d := ctData{Version: version.Get(), Now: s.now().UTC(), Configured: s.cfg.CT != nil}
	if s.cfg.CT != nil {
		d.Logs = s.cfg.CT.Status()
		var err error
		if d.Certificates, err = s.ctCertificates(r.Context()); err != nil {
			return err
		}
	}
	return s.render(w, http.StatusOK, "ct.html", d)
}

// ctAPI is GET /v1/admin/ct: the same as JSON.
func (s *Server) ctAPI(w http.ResponseWriter, r *http.Request) error {
	if err := checkParams(r.URL.Query(), nil); err != nil {
		return err
	}
	if s.cfg.CT == nil {
		return httpError(http.StatusNotFound, "the CT monitor is not running: start rampart serve with --ct-logs")
	}
	type logJSON struct {
		Log          string     `json:"log"`
		LogID        string     `json:"log_id"`
		URL          string     `json:"url"`
		TreeSize     int64      `json:"tree_size"`
		Next         int64      `json:"next"`
		Behind       int64      `json:"behind"`
		LastPoll     *time.Time `json:"last_poll,omitempty"`
		Error        string     `json:"error,omitempty"`
		Misbehaviour string     `json:"misbehaviour,omitempty"`
		Stale        string     `json:"stale,omitempty"`
		Elsewhere    bool       `json:"other_instance"`
	}
	type certJSON struct {
		TBSHash   string          `json:"tbs_sha256"`
		Class     ct.Class        `json:"class"`
		SPKI      string          `json:"spki,omitempty"`
		Issuer    string          `json:"issuer,omitempty"`
		Names     []string        `json:"names"`
		FirstSeen time.Time       `json:"first_seen"`
		LastSeen  time.Time       `json:"last_seen"`
		Sightings int64           `json:"sightings"`
		Clients   int64           `json:"reported_by_clients"`
		Reports   int64           `json:"reports"`
		Finding   json.RawMessage `json:"finding"`
	}
	out := struct {
		Logs         []logJSON  `json:"logs"`
		Certificates []certJSON `json:"certificates"`
	}{Logs: []logJSON{}, Certificates: []certJSON{}}
	for _, st := range s.cfg.CT.Status() {
		lj := logJSON{Log: st.Log.Name(), LogID: st.Log.IDString(), URL: st.Log.URL, TreeSize: st.Head.Size, Next: st.Next,
			Behind: st.Behind, Error: st.LastError, Misbehaviour: st.Misbehaviour, Stale: st.Stale, Elsewhere: st.Elsewhere}
		if !st.LastPoll.IsZero() {
			t := st.LastPoll.UTC()
			lj.LastPoll = &t
		}
		out.Logs = append(out.Logs, lj)
	}
	certs, err := s.ctCertificates(r.Context())
	if err != nil {
		return err
	}
	for _, c := range certs {
		names := c.Names
		if names == nil {
			names = []string{}
		}
		finding := json.RawMessage(c.Finding)
		if !json.Valid(finding) {
			finding = json.RawMessage("null")
		}
		out.Certificates = append(out.Certificates, certJSON{TBSHash: c.TBSHash, Class: c.Class, SPKI: c.SPKI, Issuer: c.Issuer, Names: names,
			FirstSeen: c.FirstSeen, LastSeen: c.LastSeen, Sightings: c.Sightings, Clients: c.Clients, Reports: c.Reports, Finding: finding})
	}
	return writeJSON(w, http.StatusOK, out)
}
