package version

import (
	"runtime/debug"
	"testing"

	_ "github.com/rampartsec/rampart/internal/testing/golden"
)

func TestFromBuildInfo(t *testing.T) {
	for _, tc := range []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"release", debug.BuildInfo{Main: debug.Module{Path: module, Version: "v1.2.3"}}, "v1.2.3"},
		{"dependency", debug.BuildInfo{Main: debug.Module{Path: "example.com/app"}, Deps: []*debug.Module{{Path: module, Version: "v0.4.0"}}}, "v0.4.0"},
		{"work tree without vcs", debug.BuildInfo{Main: debug.Module{Path: module, Version: "(devel)"}}, "(devel)"},
		{"work tree", debug.BuildInfo{Main: debug.Module{Path: module, Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "af704b0c0ffee1234567890abcdef"}, {Key: "vcs.modified", Value: "false"}}}, "(devel) af704b0c0ffe"},
		{"dirty work tree", debug.BuildInfo{Main: debug.Module{Path: module, Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "af704b0"}, {Key: "vcs.modified", Value: "true"}}}, "(devel) af704b0+dirty"},
		{"not rampart", debug.BuildInfo{Main: debug.Module{Path: "example.com/app", Version: "v9"}}, "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fromBuildInfo(&tc.bi); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
