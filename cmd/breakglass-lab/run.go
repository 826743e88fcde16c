package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/breakglass/breakglass/internal/lab"
	"github.com/breakglass/breakglass/internal/shell"
)

// Exit codes besides the command's own.
const (
	exitOK       = 0
	exitFailure  = 1   // the lab did not start or stop
	exitUsage    = 2   // bad flags or arguments
	exitNotFound = 127 // the command could not be started, as in a shell
)

// termGrace is how long the command has to exit after SIGTERM before it
// is killed.
const termGrace = 5 * time.Second

const usage = `usage: breakglass-lab [-n 3] [-kind namespace] [-prefix lab] [-dir DIR] -- COMMAND [ARGS…]
       breakglass-lab up [-n 3] [-kind namespace] [-prefix lab] [-dir DIR]
       breakglass-lab roots

Starts N lab hosts (real sshd in Linux namespaces, each on its own
127.x.y.z:22 with an admin user that has passwordless sudo), then runs
COMMAND with BG_LAB_INVENTORY, BG_LAB_KNOWN_HOSTS, BG_LAB_KEY and
BG_LAB_DIR set, stops the hosts and exits with COMMAND's exit code.
"up" prints those variables and keeps the hosts until Ctrl-C.

Kinds: namespace (default: the machine's own sshd, no init, starts in
milliseconds), bookworm and trixie (systemd-nspawn containers booting
systemd from Debian 12 / 13 roots with OpenSSH 9.2 / 10.0; the root is
built with debootstrap the first time, which takes minutes). "roots"
builds every root that is not cached yet, in parallel, and exits.

`

// run is the whole command; main only wires it to the process.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "roots" {
		return roots(ctx, args[1:], stderr)
	}
	up := len(args) > 0 && args[0] == "up"
	if up {
		args = args[1:]
	}
	fs := flag.NewFlagSet("breakglass-lab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	n := fs.Int("n", 3, "how many hosts")
	kindName := fs.String("kind", string(lab.Namespace), "host kind: namespace, bookworm or trixie")
	prefix := fs.String("prefix", lab.DefaultPrefix, "host name prefix")
	dir := fs.String("dir", "", "state directory (must not exist or be empty; removed afterwards); default a new one under $TMPDIR")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	command := fs.Args()
	kind, kindErr := lab.ParseKind(*kindName)
	switch {
	case kindErr != nil:
		return usageError(fs, "%v", kindErr)
	case *n < 1:
		return usageError(fs, "-n must be at least 1, got %d", *n)
	case up && len(command) > 0:
		return usageError(fs, "up takes no command, got %q", command)
	case !up && len(command) == 0:
		return usageError(fs, "missing command (or \"up\")")
	}
	if err := lab.CheckKind(kind); err != nil {
		fmt.Fprintf(stderr, "breakglass-lab: %v\n", err)
		return exitFailure
	}

	if err := lab.PrepareRoots(ctx, stderr, kind); err != nil {
		fmt.Fprintf(stderr, "breakglass-lab: %v\n", err)
		return exitFailure
	}
	start := time.Now()
	l, err := lab.Start(ctx, lab.Options{Hosts: *n, Prefix: *prefix, Dir: *dir, Kind: kind})
	if err != nil {
		fmt.Fprintf(stderr, "breakglass-lab: %v\n", err)
		return exitFailure
	}
	what := "hosts"
	if kind != lab.Namespace {
		what = string(kind) + " hosts"
	}
	fmt.Fprintf(stderr, "breakglass-lab: started %d %s in %.1fs\n", len(l.Hosts), what, time.Since(start).Seconds())
	printTable(stderr, l)

	code := exitOK
	if up {
		for _, kv := range labEnv(l) {
			fmt.Fprintf(stdout, "export %s=%s\n", kv[0], shell.Quote(kv[1]))
		}
		fmt.Fprintln(stderr, "breakglass-lab: hosts are up; Ctrl-C stops them")
		<-ctx.Done()
	} else {
		code = runCommand(ctx, l, command, stdin, stdout, stderr)
	}

	if err := l.Stop(); err != nil {
		fmt.Fprintf(stderr, "breakglass-lab: %v\n", err)
		if code == exitOK {
			code = exitFailure
		}
	} else {
		fmt.Fprintf(stderr, "breakglass-lab: stopped %d hosts\n", len(l.Hosts))
	}
	return code
}

func usageError(fs *flag.FlagSet, format string, a ...any) int {
	fmt.Fprintf(fs.Output(), "breakglass-lab: "+format+"\n", a...)
	fs.Usage()
	return exitUsage
}

// labEnv is what the command learns about the lab.
func labEnv(l *lab.Lab) [][2]string {
	return [][2]string{
		{"BG_LAB_INVENTORY", l.Inventory},
		{"BG_LAB_KNOWN_HOSTS", l.KnownHosts},
		{"BG_LAB_KEY", l.AdminKey},
		{"BG_LAB_DIR", l.Dir},
	}
}

func printTable(w io.Writer, l *lab.Lab) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESS")
	for _, h := range l.Hosts {
		fmt.Fprintf(tw, "%s\t%s\n", h.Name, h.Addr)
	}
	tw.Flush()
}

// runCommand runs command with the lab's variables and returns its exit
// code (128+N when killed by signal N). When ctx ends first, the command
// gets SIGTERM, and SIGKILL termGrace later.
func runCommand(ctx context.Context, l *lab.Lab, command []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := exec.CommandContext(ctx, command[0], command[1:]...)
	cmd.Env = os.Environ()
	for _, kv := range labEnv(l) {
		cmd.Env = append(cmd.Env, kv[0]+"="+kv[1])
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = termGrace
	err := cmd.Run()
	if err == nil {
		return exitOK
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	fmt.Fprintf(stderr, "breakglass-lab: run %s: %v\n", command[0], err)
	if cmd.Process == nil {
		return exitNotFound
	}
	return exitFailure
}

// roots builds the systemd kinds' roots that are not cached.
func roots(ctx context.Context, args []string, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintf(stderr, "breakglass-lab: roots takes no arguments, got %q\n", args)
		return exitUsage
	}
	for _, k := range lab.SystemdKinds() {
		if err := lab.CheckKind(k); err != nil {
			fmt.Fprintf(stderr, "breakglass-lab: %v\n", err)
			return exitFailure
		}
	}
	start := time.Now()
	if err := lab.PrepareRoots(ctx, stderr, lab.SystemdKinds()...); err != nil {
		fmt.Fprintf(stderr, "breakglass-lab: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stderr, "breakglass-lab: roots ready in %s in %.0fs\n", lab.CacheDir(), time.Since(start).Seconds())
	return exitOK
}
