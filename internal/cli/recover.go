package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/recovery"
	"github.com/breakglass/breakglass/internal/report"
	"github.com/breakglass/breakglass/internal/runner"
	"github.com/breakglass/breakglass/internal/transport"
)

// recoverJobs replaces each host's tasks with the recover task, and returns
// the break-glass logins and paths of the playbook's verify_access tasks:
// the ways in the fallback dialer tries.
func recoverJobs(o *options, p *plan, fix bool) ([]*runner.Job, error) {
	var out []*runner.Job
	for _, job := range p.jobs {
		key := o.key
		if key == "" && o.user != job.Target.User {
			return nil, fmt.Errorf("%w: --key is needed: %s is not the inventory's user for %s (%s)", errUsage, o.user, job.Name, job.Target.User)
		}
		if key != "" {
			if abs, err := filepath.Abs(key); err == nil {
				key = abs
			}
		}
		m, err := recovery.New(recovery.Options{User: o.user, KeyFile: key, Fix: fix, SudoUsers: sudoUsersOf(job)})
		if err != nil {
			return nil, fmt.Errorf("%w: --user: %v", errUsage, err)
		}
		j := *job
		// Keep the playbook's tasks out, but their verify_access logins in:
		// the runner gives them to the safety net of the AllowUsers fix.
		verify := job.Fallback
		if len(verify) == 0 {
			return nil, fmt.Errorf("%w: host %s: the playbook has no verify_access task naming break-glass users to get in with", errUsage, job.Name)
		}
		j.Plays = []runner.Play{{Name: "recover " + o.user, Become: true, Tasks: []runner.Task{{Name: "recover " + o.user, Module: "recover", Mod: m}}}}
		j.Fallback = verify
		out = append(out, &j)
	}
	return out, nil
}

// runRecover diagnoses every selected host, shows the plan, and with --yes
// (or a yes at the terminal) applies it and proves the user's login.
func runRecover(ctx context.Context, o *options, p *plan, d *transport.Dialer, stdout, stderr io.Writer, ro runner.Options) int {
	jobs, err := recoverJobs(o, p, false)
	if err != nil {
		errorf(stderr, "%s", strings.TrimPrefix(err.Error(), "usage: "))
		return report.ExitUsage
	}
	key := o.key
	if key != "" {
		key, _ = filepath.Abs(key)
	}
	fd := newFallbackDialer(d, p, jobs)
	fd.first = func(ctx context.Context, t transport.Target) (runner.Conn, error) {
		// sshd accepts some locked-out users and then ends the session
		// (missing shell, forced password change): only a command proves
		// the login.
		c, err := fd.dialProbe(ctx, t, o.user, key, engine.Path{Name: "direct"})
		if err != nil {
			return nil, err
		}
		return ownLogin{c}, nil
	}

	ro.Check = true
	r := runner.Run(ctx, "recover", fd, jobs, ro)
	var todo []*runner.Job
	for i, h := range r.Hosts {
		for _, t := range h.Tasks {
			if t.Module == "recover" && len(t.Changes) > 0 {
				todo = append(todo, jobs[i])
				break
			}
		}
	}
	if len(todo) == 0 || ctx.Err() != nil {
		return finishRecover(o, r, stdout, stderr)
	}
	if !o.yes {
		if !isTerminal(os.Stdin) || !isTerminalWriter(stderr) {
			errorf(stderr, "nothing changed: %d host(s) need the fixes above; run again with --yes to apply them", len(todo))
			return finishRecover(o, r, stdout, stderr)
		}
		fmt.Fprintf(stderr, "apply the fixes above on %d host(s)? [y/N] ", len(todo))
		answer, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			errorf(stderr, "nothing changed")
			return finishRecover(o, r, stdout, stderr)
		}
	}
	fixJobs, err := recoverJobs(o, &plan{pb: p.pb, inv: p.inv, jobs: todo}, true)
	if err != nil {
		errorf(stderr, "%v", err)
		return report.ExitUsage
	}
	ro.Check = false
	fmt.Fprintln(stderr, "breakglass: applying the fixes")
	fixed := runner.Run(ctx, "recover", fd, fixJobs, ro)
	for _, h := range fixed.Hosts {
		for i := range r.Hosts {
			if r.Hosts[i].Name == h.Name {
				r.Hosts[i] = h
			}
		}
	}
	r.Finished = fixed.Finished
	r.Check = false
	r.Settle()
	return finishRecover(o, r, stdout, stderr)
}

func finishRecover(o *options, r *report.Report, stdout, stderr io.Writer) int {
	textOut := stdout
	if o.format != "text" && o.output == "" {
		textOut = stderr
	}
	_ = report.WriteRecap(textOut, r, report.TextOptions{})
	if err := writeReports(o, r, stdout); err != nil {
		errorf(stderr, "%v", err)
		return r.ExitCode() | report.ExitFailed
	}
	return r.ExitCode()
}

// ownLogin is a connection as the user recover is for: recover then only
// proves that login and runs nothing as root, so it takes no host lock
// (the user may have no sudo). It hides the connection's Hold.
type ownLogin struct{ runner.Conn }
