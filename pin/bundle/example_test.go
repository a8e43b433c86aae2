package bundle_test

import (
	"fmt"
	"time"

	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/bundle"
)

// An operator signs a bundle; a client that ships the public key verifies
// it.
func Example() {
	// Operator side: `rampart bundle keygen` keeps the private key offline.
	key, err := bundle.GenerateKey("ES256")
	if err != nil {
		panic(err)
	}
	current, _ := pin.Parse("sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
	backup, _ := pin.Parse("sha256/YLh1dUR9y6Kja30RrAn7JKnbQG/uEtLMkBgFF2Fuihg=")
	policy, err := pin.NewPolicy("", pin.Domain{Name: "api.example.com", Pins: []pin.Pin{current, backup}})
	if err != nil {
		panic(err)
	}
	issued := time.Date(2025, 11, 24, 12, 0, 0, 0, time.UTC)
	jws, err := bundle.Sign(key, "mobile", 7, issued, issued.AddDate(0, 1, 0), policy)
	if err != nil {
		panic(err)
	}

	// Client side: the public key ships with the app (NAME.pub).
	pub, _ := bundle.MarshalPublicKey(key.Public())
	keys, err := bundle.ParseKeys(pub)
	if err != nil {
		panic(err)
	}
	b, err := bundle.Verify(jws, keys, issued.Add(time.Hour))
	if err != nil {
		panic(err)
	}
	fmt.Println(b.Name, b.Version, b.ExpiresAt.Format(time.DateOnly))
	fmt.Println(b.Policy.Match("api.example.com").Pins[1])
	// Output:
	// mobile 7 2025-12-24
	// sha256/YLh1dUR9y6Kja30RrAn7JKnbQG/uEtLMkBgFF2Fuihg=
}
