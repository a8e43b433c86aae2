package controlplane

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rampartsec/rampart/internal/days"
	"github.com/rampartsec/rampart/mtls"
)

// CADirName is the internal CA's directory in the data directory
// (rampart ca init makes it).
const CADirName = "ca"

// caExpiryWarning is how long before the issuing CA expires rampart serve
// and rampart ca say to rotate it.
const caExpiryWarning = 30 * 24 * time.Hour

// CAExpiryNote says when the issuing CA expires soon (or has), with what
// to do; "" when it has more than 30 days left.
func CAExpiryNote(ca *mtls.CA, now time.Time) string {
	end := ca.Issuing.NotAfter
	switch {
	case !now.Before(end):
		return fmt.Sprintf("the issuing CA expired on %s: no certificate can be issued or renewed; run 'rampart ca rotate --root-key FILE'", end.UTC().Format(time.RFC3339))
	case end.Sub(now) < caExpiryWarning:
		return fmt.Sprintf("the issuing CA expires on %s, and certificates are cut short at that time; run 'rampart ca rotate --root-key FILE'", end.UTC().Format(time.RFC3339))
	}
	return ""
}

// CARootKeyWarning is rampart serve's warning while the CA's root key is
// in the data directory, online ("" when it is not): whoever reads it can
// make issuing CAs for the trust domain.
func CARootKeyWarning(dataDir string) string {
	f := filepath.Join(dataDir, CADirName, "root.key")
	if _, err := os.Lstat(f); err != nil {
		return ""
	}
	return fmt.Sprintf("the CA's root key %s is online, next to the control plane: whoever reads it can make issuing CAs for the trust domain; move it offline (rampart ca rotate --root-key FILE brings it back once a year)", f)
}

// parseCAMaxLineage reads --ca-max-lineage: days ("90d") or a Go
// duration; "" is the default.
func parseCAMaxLineage(s string) (time.Duration, error) {
	if s == "" {
		return mtls.DefaultMaxLineage, nil
	}
	d, err := days.Parse(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--ca-max-lineage %q: want days (90d) or a duration (2160h), more than 0", s)
	}
	return d, nil
}
