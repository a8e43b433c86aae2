// Package version tells which Rampart build is running, for reports,
// User-Agent headers and `rampart version`.
package version

import (
	"runtime/debug"
	"sync"
)

const module = "github.com/rampartsec/rampart"

var get = sync.OnceValue(func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if bi.Main.Path == module {
		return bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == module {
			return d.Version
		}
	}
	return "unknown"
})

// Get returns the module version of Rampart in this binary: a release tag,
// a pseudo-version, "(devel)" for a build from a work tree, or "unknown".
func Get() string { return get() }
