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
	return fromBuildInfo(bi)
})

// fromBuildInfo is Get for bi.
func fromBuildInfo(bi *debug.BuildInfo) string {
	v := ""
	if bi.Main.Path == module {
		v = bi.Main.Version
	}
	for _, d := range bi.Deps {
		if v == "" && d.Path == module {
			v = d.Version
		}
	}
	if v == "" {
		return "unknown"
	}
	if v != "(devel)" {
		return v
	}
	// A build from a work tree: the commit, when the go command stamped it
	// (go build with -buildvcs, the default in a git checkout).
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return v
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified == "true" {
		rev += "+dirty"
	}
	return "(devel) " + rev
}

// Get returns the module version of Rampart in this binary: a release tag,
// a pseudo-version, "(devel)" for a build from a work tree (followed by
// its commit when the build recorded one, "+dirty" if it had uncommitted
// changes), or "unknown".
func Get() string { return get() }

// Commit returns the commit the binary was built from, "" if the build
// did not record one.
func Commit() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			return s.Value
		}
	}
	return ""
}
