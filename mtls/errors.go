package mtls

import "fmt"

// Error is an error of this package: "mtls: " and its Description. Every
// error the package makes is one; errors from elsewhere (the file system,
// crypto/x509, the network) are wrapped in one or returned as they are.
type Error struct {
	// Description says what is wrong for whoever can fix it: the error's
	// text without the package's prefix, so that a program can show it
	// under its own name (rampart ca does), and a server to its client
	// (RenewHandler does).
	Description string
	// err is the error it wraps, if any.
	err error
}

func (e *Error) Error() string { return "mtls: " + e.Description }

// Unwrap returns the error e wraps, if any.
func (e *Error) Unwrap() error { return e.err }

func newError(desc string) error { return &Error{Description: desc} }

// errorf is fmt.Errorf for an Error: %w wraps as it does there.
func errorf(format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	e := &Error{Description: err.Error()}
	switch err.(type) {
	case interface{ Unwrap() error }, interface{ Unwrap() []error }:
		e.err = err
	}
	return e
}

// describe is what err says without this package's prefix when it is an
// [*Error], and its text otherwise.
func describe(err error) string {
	if e, ok := err.(*Error); ok {
		return e.Description
	}
	return err.Error()
}
