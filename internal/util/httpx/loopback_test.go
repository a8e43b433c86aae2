package httpx_test

import (
	"testing"

	"github.com/rampartsec/rampart/internal/util/httpx"
)

func TestIsLoopbackHost(t *testing.T) {
	for h, want := range map[string]bool{
		"localhost": true, "127.0.0.1": true, "127.9.9.9": true, "::1": true, "::ffff:127.0.0.1": true,
		"127.example.com": false, "localhost.": false, "10.0.0.1": false, "[::1]": false, "": false,
	} {
		if got := httpx.IsLoopbackHost(h); got != want {
			t.Errorf("IsLoopbackHost(%q) = %v", h, got)
		}
	}
}
