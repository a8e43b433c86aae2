// Command rampart is the Rampart command line: certificate and public-key
// pinning tools and the demo. See 'rampart --help'.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/rampartsec/rampart/internal/app/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], cli.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	stop()
	os.Exit(code)
}
