// Command bench is `make bench`: breakglass, ansible-playbook and the raw
// OpenSSH floor on fresh lab hosts, side by side (see internal/bench).
//
//	bench [-hosts 100] [-runs 3] [-big] [-root .] [-out bench-results]
//
// HOSTS, RUNS and BIG in the environment set the defaults. It needs root
// (the lab), openssh-server and sudo; it installs Debian's ansible package
// when ansible-playbook is missing. Exit 0: every run passed its check; 2:
// some run failed its check (the table says which); 1: the bench could not
// run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/breakglass/breakglass/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := bench.Config{Log: stderr}
	fs.IntVar(&cfg.Hosts, "hosts", envInt("HOSTS", 100), "lab hosts per run (env HOSTS)")
	fs.IntVar(&cfg.Runs, "runs", envInt("RUNS", 3), "measured runs of each step (env RUNS)")
	fs.IntVar(&cfg.Forks, "forks", 0, "parallel hosts for every tool (default: hosts)")
	big := fs.Bool("big", envBool("BIG"), "also measure breakglass's peak RSS at -big-hosts hosts (env BIG=1; slow: starts that many lab hosts)")
	fs.IntVar(&cfg.BigHosts, "big-hosts", bench.BigDefault, "hosts of the -big run")
	fs.IntVar(&cfg.BigForks, "big-forks", 0, "forks of the -big run (default: big-hosts)")
	ansible := fs.Bool("ansible", true, "measure ansible-playbook (false: its column is n/a)")
	fs.StringVar(&cfg.Root, "root", ".", "the repository (examples/, bench/, bin/)")
	fs.StringVar(&cfg.Bin, "bin", "", "breakglass binary (default ROOT/bin/breakglass)")
	fs.StringVar(&cfg.OutDir, "out", "", "where latest.md and latest.json go (default ROOT/bench-results)")
	if err := fs.Parse(args); err != nil {
		return 1
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bench: unexpected arguments %q\n", fs.Args())
		return 1
	}
	if !*big {
		cfg.BigHosts = 0
	}
	cfg.NoAnsible = !*ansible

	res, err := bench.Run(ctx, cfg)
	if res != nil {
		fmt.Fprintln(stdout)
		res.WriteMarkdown(stdout)
		out := cfg.OutDir
		if out == "" {
			out = cfg.Root + "/bench-results"
		}
		fmt.Fprintf(stderr, "bench: wrote %s/latest.md and %s/latest.json\n", out, out)
		if !*big {
			fmt.Fprintf(stderr, "bench: peak memory at %d hosts was not measured; run `make bench BIG=1` (starts %d lab hosts)\n", bench.BigDefault, bench.BigDefault)
		}
	}
	switch {
	case errors.Is(err, bench.ErrFailedRuns):
		fmt.Fprintf(stderr, "bench: %v: see the notes in the table\n", err)
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	return 0
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func envBool(name string) bool {
	v, err := strconv.ParseBool(os.Getenv(name))
	return err == nil && v
}
