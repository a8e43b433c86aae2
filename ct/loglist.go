package ct

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/rampartsec/rampart/internal/util/signedct"
)

// MaxLogListSize is the largest log list [ParseLogList] reads (the public
// v3 list is about 100 KiB).
const MaxLogListSize = 4 << 20

// A Log is one Certificate Transparency log of a log list.
type Log struct {
	// Description is the log's human-readable name ("Let's Encrypt 'Oak2026h1'").
	Description string
	// Operator is the name of the organisation that runs it.
	Operator string
	// ID is the RFC 6962 §3.2 LogID: the SHA-256 of the log's DER public key.
	ID [sha256.Size]byte
	// Key is the log's public key: *ecdsa.PublicKey (P-256) or *rsa.PublicKey.
	Key crypto.PublicKey
	// Tiled says the log serves the static-ct-api (checkpoint and tiles at
	// MonitoringURL) rather than the RFC 6962 §4 JSON API at URL.
	Tiled bool
	// URL is the RFC 6962 log's base URL ("https://ct.example/2026h1/"); for a
	// tiled log, its monitoring prefix. Always ends in a slash.
	URL string
	// SubmissionURL is a tiled log's submission prefix, whose schema-less
	// form is the checkpoints' origin line. Empty for RFC 6962 logs.
	SubmissionURL string
	// MMD is the log's maximum merge delay.
	MMD time.Duration
	// State is the log's state in the list ("usable", "readonly", "retired",
	// "qualified", "pending", "rejected"), "" when unsaid.
	State string
}

// Origin is the origin line of a tiled log's checkpoints: its submission
// prefix without scheme and trailing slash (static-ct-api, "Checkpoints").
func (l *Log) Origin() string {
	s := l.SubmissionURL
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	return strings.TrimRight(s, "/")
}

// Name is how the log is named in messages: its description, else its URL.
func (l *Log) Name() string {
	if l.Description != "" {
		return l.Description
	}
	return l.URL
}

// IDString is the log ID in standard base64, as log lists write it.
func (l *Log) IDString() string { return b64(l.ID[:]) }

// The v3 log list schema
// (https://www.gstatic.com/ct/log_list/v3/log_list_schema.json): the fields
// a monitor needs. Unknown fields are allowed: the list grows.
type fileList struct {
	Operators []struct {
		Name      string    `json:"name"`
		Logs      []fileLog `json:"logs"`
		TiledLogs []fileLog `json:"tiled_logs"`
	} `json:"operators"`
}

type fileLog struct {
	Description   string                     `json:"description"`
	LogID         []byte                     `json:"log_id"`
	Key           []byte                     `json:"key"`
	URL           string                     `json:"url"`
	SubmissionURL string                     `json:"submission_url"`
	MonitoringURL string                     `json:"monitoring_url"`
	MMD           *int64                     `json:"mmd"`
	State         map[string]json.RawMessage `json:"state"`
}

// ErrLogList is wrapped by every error of [ParseLogList].
var ErrLogList = errors.New("ct: invalid log list")

// ParseLogList reads a log list in the v3 JSON schema: operators[].logs[]
// (RFC 6962 logs, with url) and operators[].tiled_logs[] (static-ct-api
// logs, with submission_url and monitoring_url), each with key, log_id and
// mmd. A log whose log_id is not the SHA-256 of its key, whose key is not a
// P-256 or RSA (≥ 2048 bits) public key, or whose URL is not http(s) is an
// error, as are two logs with one ID: a monitor must not guess which key
// vouches for which log.
func ParseLogList(data []byte) ([]Log, error) {
	if len(data) > MaxLogListSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrLogList, MaxLogListSize)
	}
	var f fileList
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrLogList, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the list", ErrLogList)
	}
	var logs []Log
	seen := map[[sha256.Size]byte]string{}
	for i, op := range f.Operators {
		for kind, list := range [2][]fileLog{op.Logs, op.TiledLogs} {
			tiled := kind == 1
			for j, fl := range list {
				where := fmt.Sprintf("operators[%d].logs[%d]", i, j)
				if tiled {
					where = fmt.Sprintf("operators[%d].tiled_logs[%d]", i, j)
				}
				l, err := fl.log(op.Name, tiled)
				if err != nil {
					return nil, fmt.Errorf("%w: %s: %v", ErrLogList, where, err)
				}
				if prev, dup := seen[l.ID]; dup {
					return nil, fmt.Errorf("%w: %s: log ID %s is also %s", ErrLogList, where, l.IDString(), prev)
				}
				seen[l.ID] = where
				logs = append(logs, l)
			}
		}
	}
	if len(logs) == 0 {
		return nil, fmt.Errorf("%w: no logs", ErrLogList)
	}
	return logs, nil
}

func (fl *fileLog) log(operator string, tiled bool) (Log, error) {
	l := Log{Description: fl.Description, Operator: operator, Tiled: tiled}
	if len(fl.Key) == 0 {
		return l, errors.New("no key")
	}
	key, err := parseLogKey(fl.Key)
	if err != nil {
		return l, err
	}
	l.Key = key
	l.ID = sha256.Sum256(fl.Key)
	if len(fl.LogID) == 0 {
		return l, errors.New("no log_id")
	}
	if !bytes.Equal(fl.LogID, l.ID[:]) {
		return l, fmt.Errorf("log_id %s is not the SHA-256 of its key (%s)", b64(fl.LogID), l.IDString())
	}
	if fl.MMD == nil {
		return l, errors.New("no mmd")
	}
	if *fl.MMD < 0 || *fl.MMD > 7*86400 {
		return l, fmt.Errorf("mmd %d s is out of range", *fl.MMD)
	}
	l.MMD = time.Duration(*fl.MMD) * time.Second
	for s := range fl.State {
		l.State = s
	}
	if len(fl.State) > 1 {
		return l, errors.New("more than one state")
	}
	if tiled {
		if fl.URL != "" {
			return l, errors.New("a tiled log has submission_url and monitoring_url, not url")
		}
		if l.URL, err = baseURL("monitoring_url", fl.MonitoringURL); err != nil {
			return l, err
		}
		if l.SubmissionURL, err = baseURL("submission_url", fl.SubmissionURL); err != nil {
			return l, err
		}
		return l, nil
	}
	if fl.MonitoringURL != "" || fl.SubmissionURL != "" {
		return l, errors.New("an RFC 6962 log has url, not submission_url or monitoring_url")
	}
	l.URL, err = baseURL("url", fl.URL)
	return l, err
}

func baseURL(field, s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("no %s", field)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%s %q is not an http(s) URL without credentials, query or fragment", field, s)
	}
	if !strings.HasSuffix(s, "/") {
		s += "/"
	}
	return s, nil
}

// parseLogKey reads a log's DER SubjectPublicKeyInfo (signedct.ParseKey).
func parseLogKey(der []byte) (crypto.PublicKey, error) { return signedct.ParseKey(der) }

// ReadLogList reads a log list from a file or, for an http(s) URL, over
// the network with client (nil: http.DefaultClient); see [ParseLogList].
func ReadLogList(ctx context.Context, client *http.Client, spec string) ([]Log, error) {
	var r io.Reader
	if strings.HasPrefix(spec, "https://") || strings.HasPrefix(spec, "http://") {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, spec, nil)
		if err != nil {
			return nil, fmt.Errorf("ct: log list %q: %w", spec, err)
		}
		req.Header.Set("User-Agent", userAgent)
		if client == nil {
			client = http.DefaultClient
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("ct: fetching the log list: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("ct: fetching the log list %s: %s", spec, resp.Status)
		}
		r = resp.Body
	} else {
		f, err := os.Open(spec)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, MaxLogListSize+1))
	if err != nil {
		return nil, fmt.Errorf("ct: reading the log list %s: %w", spec, err)
	}
	logs, err := ParseLogList(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec, err)
	}
	return logs, nil
}
