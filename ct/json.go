package ct

import (
	"encoding/hex"
	"encoding/json"
	"time"
)

// MarshalJSON writes a finding in the documented schema (docs/ct.md) that
// `rampart ct check --json`, the control plane's API and its webhook use.
func (f *Finding) MarshalJSON() ([]byte, error) {
	type rule struct {
		Rule      string `json:"rule"`
		Mode      string `json:"mode"`
		Class     Class  `json:"class"`
		Pin       string `json:"pin,omitempty"`
		Role      string `json:"role,omitempty"`
		Position  *int   `json:"position,omitempty"`
		Announced bool   `json:"announced,omitempty"`
		Expired   bool   `json:"expired,omitempty"`
	}
	out := struct {
		Class      Class      `json:"class"`
		Names      []string   `json:"names"`
		Log        string     `json:"log"`
		LogID      string     `json:"log_id"`
		Index      int64      `json:"index"`
		Timestamp  time.Time  `json:"timestamp"`
		Precert    bool       `json:"precertificate"`
		SPKI       string     `json:"spki,omitempty"`
		TBSHash    string     `json:"tbs_sha256,omitempty"`
		Issuer     string     `json:"issuer,omitempty"`
		Serial     string     `json:"serial,omitempty"`
		NotBefore  *time.Time `json:"not_before,omitempty"`
		NotAfter   *time.Time `json:"not_after,omitempty"`
		Chain      []string   `json:"chain"`
		Rules      []rule     `json:"rules"`
		ParseError string     `json:"parse_error,omitempty"`
		LeafHash   string     `json:"leaf_hash"`
	}{
		Class: f.Verdict.Class, Names: f.Verdict.Names, Index: f.Index, Timestamp: writable(f.Timestamp),
		Precert: f.Precert, Chain: f.ChainIssuers, Rules: []rule{}, ParseError: f.ParseError,
		LeafHash: b64(f.LeafHash[:]),
	}
	if out.Names == nil {
		out.Names = []string{}
	}
	if out.Chain == nil {
		out.Chain = []string{}
	}
	if f.Log != nil {
		out.Log, out.LogID = f.Log.Name(), f.Log.IDString()
	}
	if c := f.Certificate; c != nil {
		out.SPKI = f.Verdict.SPKI.String()
		out.TBSHash = hex.EncodeToString(c.TBSHash[:])
		out.Issuer, out.Serial = c.Issuer, c.Serial
		if nb := writable(c.NotBefore); !nb.IsZero() {
			out.NotBefore = &nb
		}
		if na := writable(c.NotAfter); !na.IsZero() {
			out.NotAfter = &na
		}
	}
	for _, r := range f.Verdict.Rules {
		jr := rule{Rule: r.Rule, Mode: string(r.Mode), Class: r.Class, Role: string(r.Role), Announced: r.Announced, Expired: r.Expired}
		if !r.Pin.IsZero() {
			jr.Pin = r.Pin.String()
			pos := r.Position
			jr.Position = &pos
		}
		out.Rules = append(out.Rules, jr)
	}
	return json.Marshal(out)
}

// writable is t in UTC when JSON can write it (years 0 to 9999), else
// zero: a finding is always written, whatever a certificate or log says.
func writable(t time.Time) time.Time {
	if t = t.UTC(); t.Year() < 0 || t.Year() > 9999 {
		return time.Time{}
	}
	return t
}
