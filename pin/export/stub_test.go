package export_test

import "crypto/x509"

// x509Stub is enough of a certificate for pin.Fingerprint.
var x509Stub = x509.Certificate{Raw: []byte("certificate")}
