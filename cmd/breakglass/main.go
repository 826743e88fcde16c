// Command breakglass makes sure nobody is ever locked out of a server: it
// creates break-glass users, repairs what sshd refuses, and proves every way
// in with real logins. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/breakglass/breakglass/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
