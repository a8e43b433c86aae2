package vectors

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
)

// Files of the vector directory.
const (
	BundlesFile = "bundles.json"
	PKIFileName = "pki.json"
)

// Write generates both vector files into dir.
func Write(dir string) error {
	b, err := BuildBundles()
	if err != nil {
		return err
	}
	p, err := BuildPKI()
	if err != nil {
		return err
	}
	for name, v := range map[string]any{BundlesFile: b, PKIFileName: p} {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Read reads the vector files from dir.
func Read(dir string) (*BundleFile, *PKIFile, error) {
	var b BundleFile
	var p PKIFile
	for name, v := range map[string]any{BundlesFile: &b, PKIFileName: &p} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, nil, err
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			return nil, nil, err
		}
	}
	return &b, &p, nil
}
