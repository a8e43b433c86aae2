package ct_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/rampartsec/rampart/ct"
	"github.com/rampartsec/rampart/internal/testing/ctlog"
)

func keyDER(t testing.TB, curve elliptic.Curve) []byte {
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return der
}

// logListDoc is a v3 list with one operator holding logs and tiled logs.
func logListDoc(logs, tiled []map[string]any) []byte {
	if logs == nil {
		logs = []map[string]any{}
	}
	if tiled == nil {
		tiled = []map[string]any{}
	}
	b, _ := json.Marshal(map[string]any{"version": "1", "operators": []any{map[string]any{"name": "Op", "logs": logs, "tiled_logs": tiled}}})
	return b
}

func logEntry(der []byte, fields map[string]any) map[string]any {
	id := sha256.Sum256(der)
	e := map[string]any{"description": "a log", "log_id": id[:], "key": der, "mmd": 86400,
		"url": "https://ct.example/2026/", "state": map[string]any{"usable": map[string]any{}}}
	for k, v := range fields {
		if v == nil {
			delete(e, k)
		} else {
			e[k] = v
		}
	}
	return e
}

func tiledEntry(der []byte, fields map[string]any) map[string]any {
	e := logEntry(der, map[string]any{"url": nil, "submission_url": "https://ct.example/tiled2026", "monitoring_url": "https://tiles.example/tiled2026"})
	for k, v := range fields {
		if v == nil {
			delete(e, k)
		} else {
			e[k] = v
		}
	}
	return e
}

func TestParseLogList(t *testing.T) {
	p256 := keyDER(t, elliptic.P256())
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaDER, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	logs, err := ct.ParseLogList(logListDoc([]map[string]any{logEntry(rsaDER, nil)}, []map[string]any{tiledEntry(p256, nil)}))
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) != 2 || logs[0].Tiled || !logs[1].Tiled {
		t.Fatalf("logs %+v", logs)
	}
	if l := logs[0]; l.URL != "https://ct.example/2026/" || l.Operator != "Op" || l.MMD.Hours() != 24 || l.State != "usable" {
		t.Errorf("RFC 6962 log %+v", l)
	}
	if l := logs[1]; l.URL != "https://tiles.example/tiled2026/" || l.Origin() != "ct.example/tiled2026" {
		t.Errorf("tiled log: url %q origin %q", l.URL, l.Origin())
	}
	if id := sha256.Sum256(p256); logs[1].ID != id {
		t.Error("log ID")
	}

	p384 := keyDER(t, elliptic.P384())
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	smallDER, _ := x509.MarshalPKIXPublicKey(&small.PublicKey)
	other := sha256.Sum256([]byte("other"))
	for _, c := range []struct {
		name string
		doc  []byte
		want string
	}{
		{"no logs", logListDoc(nil, nil), "no logs"},
		{"not JSON", []byte("{"), "unexpected EOF"},
		{"data after", append(logListDoc([]map[string]any{logEntry(p256, nil)}, nil), []byte("{}")...), "data after"},
		{"no key", logListDoc([]map[string]any{logEntry(p256, map[string]any{"key": nil})}, nil), "no key"},
		{"bad key", logListDoc([]map[string]any{logEntry(p256, map[string]any{"key": []byte("junk")})}, nil), "key:"},
		{"P-384 key", logListDoc([]map[string]any{logEntry(p384, nil)}, nil), "not P-256"},
		{"small RSA key", logListDoc([]map[string]any{logEntry(smallDER, nil)}, nil), "fewer than 2048"},
		{"log ID of another key", logListDoc([]map[string]any{logEntry(p256, map[string]any{"log_id": other[:]})}, nil), "not the SHA-256 of its key"},
		{"no log ID", logListDoc([]map[string]any{logEntry(p256, map[string]any{"log_id": nil})}, nil), "no log_id"},
		{"no mmd", logListDoc([]map[string]any{logEntry(p256, map[string]any{"mmd": nil})}, nil), "no mmd"},
		{"negative mmd", logListDoc([]map[string]any{logEntry(p256, map[string]any{"mmd": -1})}, nil), "out of range"},
		{"two states", logListDoc([]map[string]any{logEntry(p256, map[string]any{"state": map[string]any{"usable": map[string]any{}, "retired": map[string]any{}}})}, nil), "more than one state"},
		{"no url", logListDoc([]map[string]any{logEntry(p256, map[string]any{"url": nil})}, nil), "no url"},
		{"ftp url", logListDoc([]map[string]any{logEntry(p256, map[string]any{"url": "ftp://ct.example/"})}, nil), "not an http(s) URL"},
		{"url with credentials", logListDoc([]map[string]any{logEntry(p256, map[string]any{"url": "https://u:p@ct.example/"})}, nil), "without credentials"},
		{"url with query", logListDoc([]map[string]any{logEntry(p256, map[string]any{"url": "https://ct.example/?a=b"})}, nil), "query"},
		{"RFC 6962 log with tiled URLs", logListDoc([]map[string]any{logEntry(p256, map[string]any{"monitoring_url": "https://x/"})}, nil), "not submission_url or monitoring_url"},
		{"tiled log with url", logListDoc(nil, []map[string]any{tiledEntry(p256, map[string]any{"url": "https://x/"})}), "not url"},
		{"tiled log without monitoring_url", logListDoc(nil, []map[string]any{tiledEntry(p256, map[string]any{"monitoring_url": nil})}), "no monitoring_url"},
		{"tiled log without submission_url", logListDoc(nil, []map[string]any{tiledEntry(p256, map[string]any{"submission_url": nil})}), "no submission_url"},
		{"one ID twice", logListDoc([]map[string]any{logEntry(p256, nil)}, []map[string]any{tiledEntry(p256, nil)}), "is also operators[0].logs[0]"},
		{"too large", []byte(strings.Repeat(" ", ct.MaxLogListSize+1)), "larger than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ct.ParseLogList(c.doc)
			if !errors.Is(err, ct.ErrLogList) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err %v, want %q", err, c.want)
			}
		})
	}
}

// TestVerifyCheckpoint checks checkpoints as c2sp.org/static-ct-api
// defines them: the RFC 6962 note signature of the log's key, over a body
// of exactly origin, size and root.
func TestVerifyCheckpoint(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	logs, err := ct.ParseLogList(logListDoc(nil, []map[string]any{tiledEntry(der, nil)}))
	if err != nil {
		t.Fatal(err)
	}
	l := &logs[0]
	root := sha256.Sum256([]byte("root"))
	good := ctlog.SignCheckpoint(t, key, l.Origin(), 1234, root)
	h, err := l.VerifyCheckpoint(good)
	if err != nil {
		t.Fatal(err)
	}
	if h.Size != 1234 || h.Root != root || h.Time.IsZero() {
		t.Errorf("head %+v", h)
	}
	// A witness's cosignature is ignored, not an error.
	witnessed := append(append([]byte(nil), good...), []byte("\u2014 witness.example "+base64.StdEncoding.EncodeToString(make([]byte, 72))+"\n")...)
	if _, err := l.VerifyCheckpoint(witnessed); err != nil {
		t.Errorf("a cosigned checkpoint: %v", err)
	}
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	body, sig, _ := strings.Cut(string(good), "\n\n")
	for _, c := range []struct {
		name string
		data string
		want error
	}{
		{"signed by another key", string(ctlog.SignCheckpoint(t, otherKey, l.Origin(), 1234, root)), ct.ErrSignature},
		{"another origin", string(ctlog.SignCheckpoint(t, key, "other.example/log", 1234, root)), ct.ErrSignature},
		{"size changed", strings.Replace(body, "1234", "1235", 1) + "\n\n" + sig, ct.ErrSignature},
		{"extension line", body + "\nextension\n\n" + sig, ct.ErrCheckpoint},
		{"no signature", body + "\n\n", ct.ErrCheckpoint},
		{"truncated", string(good[:len(good)/2]), ct.ErrCheckpoint},
		{"leading zero size", strings.Replace(body, "\n1234\n", "\n01234\n", 1) + "\n\n" + sig, ct.ErrCheckpoint},
		{"too large", strings.Repeat("x", 20000), ct.ErrCheckpoint},
		{"a size beyond 2^48", string(ctlog.SignCheckpoint(t, key, l.Origin(), 1<<62+1, root)), ct.ErrCheckpoint},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := l.VerifyCheckpoint([]byte(c.data)); !errors.Is(err, c.want) {
				t.Errorf("err %v, want %v", err, c.want)
			}
		})
	}
}
