package ct

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/rampartsec/rampart/pin"
)

// ErrAnnouncements is wrapped by the errors of [ParseAnnouncements].
var ErrAnnouncements = errors.New("ct: invalid announcements")

// MaxAnnouncementsSize bounds an announcements file.
const MaxAnnouncementsSize = 1 << 20

// ReadAnnouncementsFile reads an announcements file's bytes, at most
// one past [MaxAnnouncementsSize] (which ParseAnnouncements refuses).
func ReadAnnouncementsFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, MaxAnnouncementsSize+1))
}

// LoadAnnouncements reads and parses an announcements file; errors name it.
func LoadAnnouncements(path string) ([]Announcement, error) {
	data, err := ReadAnnouncementsFile(path)
	if err != nil {
		return nil, err
	}
	a, err := ParseAnnouncements(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

// ParseAnnouncements reads a file of announced certificates and keys
// (YAML or JSON, strict):
//
//	expected:
//	  - spki: sha256/...            # the key of a planned renewal
//	    domain: api.example.com     # optional: any domain when absent
//	    until: 2027-01-31           # optional, inclusive (UTC)
//	    note: 2027 renewal
//	  - tbs: 3f9c...                # one certificate: its TBS hash (hex SHA-256)
func ParseAnnouncements(data []byte) ([]Announcement, error) {
	if len(data) > MaxAnnouncementsSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrAnnouncements, MaxAnnouncementsSize)
	}
	var f struct {
		Expected []struct {
			SPKI   string `yaml:"spki"`
			TBS    string `yaml:"tbs"`
			Domain string `yaml:"domain"`
			Until  string `yaml:"until"`
			Note   string `yaml:"note"`
		} `yaml:"expected"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %v", ErrAnnouncements, err)
	}
	var out []Announcement
	for i, e := range f.Expected {
		where := fmt.Sprintf("expected[%d]", i)
		a := Announcement{Note: e.Note}
		if (e.SPKI == "") == (e.TBS == "") {
			return nil, fmt.Errorf("%w: %s: give spki or tbs, one of them", ErrAnnouncements, where)
		}
		if e.SPKI != "" {
			p, err := pin.Parse(e.SPKI)
			if err != nil || p.Kind() != pin.SPKI {
				return nil, fmt.Errorf("%w: %s: spki %q is not an SPKI pin (sha256/...)", ErrAnnouncements, where, e.SPKI)
			}
			a.SPKI = p
		}
		if e.TBS != "" {
			b, err := hex.DecodeString(strings.TrimPrefix(e.TBS, "sha256:"))
			if err != nil || len(b) != len(a.TBS) {
				return nil, fmt.Errorf("%w: %s: tbs %q is not a hex SHA-256", ErrAnnouncements, where, e.TBS)
			}
			copy(a.TBS[:], b)
		}
		if e.Domain != "" {
			d, err := pin.CanonicalHost(e.Domain)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrAnnouncements, where, err)
			}
			a.Domain = d
		}
		if e.Until != "" {
			t, err := time.Parse(time.DateOnly, e.Until)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: until %q is not a date (YYYY-MM-DD)", ErrAnnouncements, where, e.Until)
			}
			a.Until = t.AddDate(0, 0, 1).Add(-time.Nanosecond)
		}
		out = append(out, a)
	}
	return out, nil
}
