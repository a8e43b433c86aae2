package controlplane

import (
	_ "github.com/rampartsec/rampart/internal/testing/golden"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// parseByteSize reads what it writes: n of each unit, and nothing else.
func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"4GiB", "512MiB", "1KB", "10B", "0", "", "-1GiB", "1.5GiB", "9223372036854775807TiB", "GiB", " 5 MiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseQuota(s)
		if err != nil {
			if !strings.Contains(err.Error(), "want 0 (no bound) or a size such as 4GiB") {
				t.Fatalf("%q: %v", s, err)
			}
			return
		}
		switch {
		case s == "":
			if n != 0 {
				t.Fatalf("%q: %d, want 0 (the default)", s, n)
			}
		case s == "0":
			if n != -1 {
				t.Fatalf("%q: %d, want -1 (no bound)", s, n)
			}
		case n <= 0 || n > 1<<62:
			t.Fatalf("%q: %d", s, n)
		}
	})
}

func TestParseByteSize(t *testing.T) {
	for s, want := range map[string]int64{"4GiB": 4 << 30, "512MiB": 512 << 20, "64KiB": 64 << 10, "2TiB": 2 << 40, "3GB": 3e9, "10B": 10, "1 MiB": 1 << 20} {
		if got, err := parseByteSize(s); err != nil || got != want {
			t.Errorf("parseByteSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "GiB", "-1MiB", "0MiB", "1.5GiB", "1 gib", "lots", "9999999999TiB"} {
		if _, err := parseByteSize(s); err == nil {
			t.Errorf("parseByteSize(%q) accepted", s)
		}
	}
}

// FuzzServeConfig: any file is either read or refused with a message
// that names the file and holds no Go type name; a file that is read sets
// exactly the fields it says it sets.
func FuzzServeConfig(f *testing.F) {
	for _, s := range []string{"listen: 127.0.0.1:1\n", "retension: 30d\n", "reports:\n  rate: fast\n", "reports:\n  rat: 5\n",
		"bundle_keys: [a.pem, b.pem]\nscope_implies: {payment.write: [payment.read]}\n", "- a\n- b\n", "reports: 5\n", ":\n", "access_log: maybe\n", ""} {
		f.Add(s)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, content string) {
		path := filepath.Join(dir, "serve-"+strconv.Itoa(len(content)%7)+".yaml")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		c, set, err := loadFileKeys(path)
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, path+": ") {
				t.Fatalf("error %q does not name the file", msg)
			}
			for _, goName := range []string{"cli.", "File", "[]string", "map[string]", "*int", "*bool"} {
				if strings.Contains(msg, goName) {
					t.Fatalf("error %q shows the Go type name %q", msg, goName)
				}
			}
			return
		}
		if c == nil {
			t.Fatal("no config and no error")
		}
		if set["listen"] != (c.Listen != "") && c.Listen != "" {
			t.Fatalf("listen %q set=%v", c.Listen, set["listen"])
		}
	})
}
