// Command breakglass-lab starts lab hosts (real sshd servers in Linux
// namespaces, see internal/lab) for a command and stops them afterwards:
//
//	breakglass-lab [-n 3] [-kind namespace|bookworm|trixie] [-prefix lab] [-dir DIR] -- COMMAND [ARGS…]
//	breakglass-lab up [-n 3] [-kind namespace|bookworm|trixie] [-prefix lab] [-dir DIR]
//	breakglass-lab roots
//
// It needs root, util-linux, openssh-server and sudo; the systemd kinds
// also systemd-container, and debootstrap to build their roots.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
