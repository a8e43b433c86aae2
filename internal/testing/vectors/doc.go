// Package vectors generates the cross-language test vectors of Rampart's
// pinning clients (clients/testdata/vectors): signed pin bundles with the
// decision a client must reach, and PKI scenarios with the accept or
// refuse and the report each must give. The Go client (packages pin,
// pin/bundle and pin/report) runs every vector in this package's tests;
// the Android/JVM and JavaScript clients run the same files, and so can
// any future client (Swift).
//
// Regenerate with
//
//	go test ./internal/testing/vectors -run TestVectors -update
//
// which rewrites the files from [BuildBundles] and [BuildPKI]: new keys,
// certificates and signatures, the same cases and decisions. The decisions
// are written in the generator by hand, never computed by the code under
// test. The certificates are valid for four years from generation.
package vectors
