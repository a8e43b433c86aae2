package authz

// LoadCases are the load cases of TestParseLimitConfig, for the
// differential test against envoyproxy/ratelimit (package authz_test).
var LoadCases = func() []struct{ Name, File, Err string } {
	var out []struct{ Name, File, Err string }
	for _, c := range loadCases {
		out = append(out, struct{ Name, File, Err string }{c.name, c.file, c.err})
	}
	return out
}()
