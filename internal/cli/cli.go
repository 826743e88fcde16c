// Package cli is the breakglass command line: it parses flags, loads the
// inventory and playbook, checks every input before any host is contacted,
// runs the hosts and writes the report. main only wires signals to Run.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/hashicorp/go-multierror"
	"golang.org/x/crypto/ssh"
	"golang.org/x/term"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/playbook"
	"github.com/breakglass/breakglass/internal/report"
	"github.com/breakglass/breakglass/internal/runner"
	"github.com/breakglass/breakglass/internal/transport"
	"github.com/breakglass/breakglass/inventory"
	"github.com/breakglass/breakglass/tasks"
)

// Version is set at build time (-ldflags "-X …/internal/cli.Version=…").
var Version = "dev"

// Run runs breakglass with args (without the program name) and returns the
// exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return report.ExitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "breakglass %s\n", Version)
		return report.ExitOK
	case "help", "-h", "--help", "-help":
		usage(stdout)
		return report.ExitOK
	case "apply", "verify", "audit", "recover":
	default:
		errorf(stderr, "unknown command %q", cmd)
		usage(stderr)
		return report.ExitUsage
	}
	o, err := parseArgs(cmd, rest)
	if err != nil {
		errorf(stderr, "%s", strings.TrimPrefix(err.Error(), "usage: "))
		fmt.Fprintln(stderr, "breakglass: run 'breakglass help' for usage")
		return report.ExitUsage
	}
	return run(ctx, o, stdout, stderr)
}

func errorf(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "breakglass: "+format+"\n", args...)
}

// plan is everything a run needs, checked before any host is contacted.
type plan struct {
	pb     *playbook.Playbook
	inv    *inventory.Inventory
	sshCfg *transport.SSHConfig
	jobs   []*runner.Job
	// hostKeys holds, by host name, the host key verified on each host's
	// control connection (ssh.PublicKey): secondary_sshd's port must
	// present the same one before it is recorded in known_hosts.
	hostKeys sync.Map
}

// prepare loads and checks every input and builds the per-host jobs. All
// input errors are returned together.
func prepare(o *options) (*plan, error) {
	var errs *multierror.Error
	inv, err := inventory.Load(o.inventories...)
	if err != nil {
		errs = multierror.Append(errs, err)
	}
	pb, err := playbook.Load(o.playbook)
	if err != nil {
		errs = multierror.Append(errs, err)
	}
	if errs.ErrorOrNil() != nil {
		return nil, dedupe(errs)
	}
	var limit map[string]bool
	if o.limit != "" {
		hosts, err := inv.Match(o.limit)
		if err != nil {
			return nil, fmt.Errorf("--limit %q: %w", o.limit, err)
		}
		if len(hosts) == 0 {
			return nil, fmt.Errorf("--limit %q matches no host in the inventory", o.limit)
		}
		limit = map[string]bool{}
		for _, h := range hosts {
			limit[h.Name] = true
		}
	}
	sshCfgPath := o.sshConfig
	if sshCfgPath == "" {
		if home, err := os.UserHomeDir(); err == nil {
			sshCfgPath = filepath.Join(home, ".ssh", "config")
		}
	}
	sshCfg, err := transport.LoadSSHConfig(sshCfgPath)
	if err != nil {
		return nil, err
	}

	p := &plan{pb: pb, inv: inv, sshCfg: sshCfg}
	byName := map[string]*runner.Job{}
	for _, play := range pb.Plays {
		hosts, err := inv.Match(play.Hosts)
		if err != nil {
			errs = multierror.Append(errs, fmt.Errorf("%s:%d:%d: hosts %q: %w", pb.File, play.Line, play.Column, play.Hosts, err))
			continue
		}
		if len(hosts) == 0 {
			errs = multierror.Append(errs, fmt.Errorf("%s:%d:%d: hosts %q matches no host in the inventory", pb.File, play.Line, play.Column, play.Hosts))
			continue
		}
		for _, h := range hosts {
			if limit != nil && !limit[h.Name] {
				continue
			}
			job := byName[h.Name]
			if job == nil {
				t, err := transport.Resolve(h.Name, h.Vars, sshCfg)
				if err != nil {
					errs = multierror.Append(errs, fmt.Errorf("host %s: %w", h.Name, err))
					continue
				}
				job = &runner.Job{Name: h.Name, Target: t}
				if pw, ok := h.Vars["ansible_become_password"].(string); ok {
					job.BecomePassword = pw
				}
				byName[h.Name] = job
				p.jobs = append(p.jobs, job)
			}
			rp := runner.Play{Name: play.Name, Become: play.Become}
			for _, t := range play.Tasks {
				if o.command == "verify" && t.Module != "verify_access" {
					continue
				}
				m, err := playbook.Build(t, play.Vars, h.Vars, false)
				if err != nil {
					errs = multierror.Append(errs, fmt.Errorf("host %s: %w", h.Name, err))
					continue
				}
				rp.Tasks = append(rp.Tasks, runner.Task{Name: t.Name, Module: t.Module, Mod: m})
			}
			for _, t := range rp.Tasks {
				if _, ok := t.Mod.(tasks.LoginSource); ok {
					job.Fallback = append(job.Fallback, t)
				}
			}
			job.Plays = append(job.Plays, rp)
		}
	}
	if errs.ErrorOrNil() != nil {
		return nil, dedupe(errs)
	}
	for _, job := range p.jobs {
		if err := linkPlays(job); err != nil {
			errs = multierror.Append(errs, fmt.Errorf("host %s: %w", job.Name, err))
		}
	}
	if errs.ErrorOrNil() != nil {
		return nil, dedupe(errs)
	}
	if len(p.jobs) == 0 {
		return nil, errors.New("no host selected: every play's hosts are outside --limit")
	}
	if o.command == "verify" {
		n := 0
		for _, j := range p.jobs {
			for _, pl := range j.Plays {
				n += len(pl.Tasks)
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("%s: no verify_access task: verify has nothing to prove", pb.File)
		}
	}
	return p, nil
}

// linkPlays shows each module that depends on a host's other tasks
// (secondary_sshd's key store is what the authorized_key tasks give) every
// module built for the host, before any host is contacted.
func linkPlays(job *runner.Job) error {
	var mods []tasks.Module
	for _, pl := range job.Plays {
		for _, t := range pl.Tasks {
			mods = append(mods, t.Mod)
		}
	}
	var errs *multierror.Error
	for _, m := range mods {
		if l, ok := m.(tasks.PlayLinker); ok {
			if err := l.LinkPlay(mods, job.Target.Port); err != nil {
				errs = multierror.Append(errs, err)
			}
		}
	}
	return errs.ErrorOrNil()
}

// dedupe drops identical messages: the same bad task is usually bad for
// every host, and one line says it.
func dedupe(me *multierror.Error) error {
	seen := map[string]bool{}
	var lines []string
	for _, e := range me.Errors {
		for _, line := range strings.Split(e.Error(), "\n") {
			key := line
			if strings.HasPrefix(line, "host ") {
				if _, rest, ok := strings.Cut(line, ": "); ok {
					key = rest
				}
			}
			if seen[key] {
				continue
			}
			seen[key] = true
			lines = append(lines, line)
		}
	}
	return errors.New(strings.Join(lines, "\n"))
}

func run(ctx context.Context, o *options, stdout, stderr io.Writer) int {
	p, err := prepare(o)
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			if strings.TrimSpace(line) != "" {
				errorf(stderr, "%s", line)
			}
		}
		return report.ExitUsage
	}
	if o.command == "audit" {
		// Read-only: the playbook's changes are only planned (drift), its
		// logins are real, and the lockout checks run last.
		o.check = true
		addAudit(o, p.jobs)
	}
	keepGoing := o.command == "audit"
	become, err := becomePassword(o, stderr)
	if err != nil {
		errorf(stderr, "%v", err)
		return report.ExitUsage
	}
	knownHosts := o.knownHosts
	dialer, err := transport.NewDialer(transport.Config{
		KnownHostsFile: knownHosts,
		AcceptNew:      o.acceptNew,
		ConnectTimeout: o.timeout,
		Passphrase:     passphrasePrompt(stderr),
	})
	if err != nil {
		errorf(stderr, "%v", err)
		return report.ExitUsage
	}

	color := !o.noColor && os.Getenv("NO_COLOR") == "" && isTerminalWriter(stdout)
	textOut := stdout
	if o.format != "text" && o.output == "" {
		textOut = stderr // data on stdout, the human view on stderr
	}
	textOpts := report.TextOptions{Verbose: o.verbose, Color: color}
	progress := isTerminalWriter(stderr)

	ro := runner.Options{
		Forks:          o.forks,
		Timeout:        o.timeout,
		Check:          o.check,
		Diff:           o.diff,
		Dir:            p.pb.Dir,
		BecomePassword: become,
		KeepGoing:      keepGoing,
		// verify proves the logins and nothing else: no control login.
		NoControl: o.command == "verify",
		Logins:    loginsFor(dialer, p),
		LockNote:  runNote(o),
		HostDone: func(h *report.Host) {
			if o.command == "audit" {
				driftFindings(h, o.playbook)
			}
			if progress {
				fmt.Fprint(stderr, "\r\033[K")
			}
			_ = report.WriteHost(textOut, h, textOpts)
		},
	}
	if progress {
		ro.Progress = func(done, total, failed int) {
			fmt.Fprintf(stderr, "\r\033[K%d/%d hosts done, %d failed", done, total, failed)
		}
	}
	if o.command == "recover" {
		return runRecover(ctx, o, p, dialer, stdout, stderr, ro)
	}
	r := runner.Run(ctx, o.command, newFallbackDialer(dialer, p, p.jobs), p.jobs, ro)
	if progress {
		fmt.Fprint(stderr, "\r\033[K")
	}
	_ = report.WriteRecap(textOut, r, textOpts)

	if err := writeReports(o, r, stdout); err != nil {
		errorf(stderr, "%v", err)
		return r.ExitCode() | report.ExitFailed
	}
	if ctx.Err() != nil {
		errorf(stderr, "interrupted: %d hosts not done", r.Summary.NotDone)
	}
	return r.ExitCode()
}

// runNote names this run in the lock it holds on each host, for the
// message a run that finds the host taken shows.
func runNote(o *options) string {
	w := []string{"breakglass", o.command, o.playbook}
	if o.check && o.command == "apply" {
		w = append(w, "--check")
	}
	if o.user != "" {
		w = append(w, "--user", o.user)
	}
	if o.limit != "" {
		w = append(w, "--limit", o.limit)
	}
	return strings.Join(w, " ")
}

func writeReports(o *options, r *report.Report, stdout io.Writer) error {
	write := func(w io.Writer) error {
		switch o.format {
		case "json":
			return report.WriteJSON(w, r)
		case "junit":
			return report.WriteJUnit(w, r)
		}
		return report.WriteText(w, r, report.TextOptions{Verbose: o.verbose})
	}
	if o.output != "" {
		if err := report.WriteFileAtomic(o.output, write); err != nil {
			return err
		}
	} else if o.format != "text" {
		if err := write(stdout); err != nil {
			return err
		}
	}
	if o.metrics != "" {
		if err := report.WriteFileAtomic(o.metrics, func(w io.Writer) error { return report.WriteMetrics(w, r) }); err != nil {
			return err
		}
	}
	return nil
}

func becomePassword(o *options, stderr io.Writer) (string, error) {
	if pw, ok := os.LookupEnv("BREAKGLASS_BECOME_PASSWORD"); ok && !o.askBecome {
		return pw, nil
	}
	if !o.askBecome {
		return "", nil
	}
	if !isTerminal(os.Stdin) {
		return "", errors.New("--ask-become-pass needs a terminal; set BREAKGLASS_BECOME_PASSWORD instead")
	}
	fmt.Fprint(stderr, "BECOME password: ")
	pw, err := term.ReadPassword(int(os.Stdin.Fd()))
	fmt.Fprintln(stderr)
	if err != nil {
		return "", fmt.Errorf("read become password: %w", err)
	}
	return string(pw), nil
}

// passphrasePrompt asks for key passphrases on the terminal, one prompt at
// a time; without a terminal it returns nil, and encrypted keys are a clear
// error from the transport.
func passphrasePrompt(stderr io.Writer) func(string) ([]byte, error) {
	if !isTerminal(os.Stdin) {
		return nil
	}
	var mu sync.Mutex
	return func(file string) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(stderr, "passphrase for %s: ", file)
		pw, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(stderr)
		return pw, err
	}
}

func isTerminalWriter(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isTerminal(f)
}

var _ runner.Conn = (*transport.Client)(nil)

// loginsFor builds the fresh-login dialer of each job: verify_access and
// the safety net use it, never the control connection.
func loginsFor(d *transport.Dialer, p *plan) func(job *runner.Job) engine.LoginDialer {
	return func(job *runner.Job) engine.LoginDialer {
		return &loginDialer{d: d, job: job, plan: p}
	}
}

type loginDialer struct {
	d    *transport.Dialer
	job  *runner.Job
	plan *plan
}

func (l *loginDialer) Login(ctx context.Context, user, keyFile string, path engine.Path) (engine.Runner, func() error, error) {
	if keyFile == "" && user != l.job.Target.User {
		// Connected as a break-glass user (recover): log in with its key.
		keyFile = l.breakGlassKey(user)
	}
	t, err := pathTarget(l.plan, l.job.Target, user, keyFile, path)
	if err != nil {
		return nil, nil, err
	}
	if f := engine.SourcePortHook(ctx); f != nil {
		ctx = transport.WithConnHook(ctx, func(a net.Addr) {
			if tcp, ok := a.(*net.TCPAddr); ok {
				f(tcp.Port)
			}
		})
	}
	c, err := l.d.Dial(ctx, t)
	if err != nil {
		return nil, nil, err
	}
	// What the login may print is bounded by the prover (engine.ProveOn),
	// the one caller.
	return c, c.Close, nil
}

func (l *loginDialer) breakGlassKey(user string) string {
	tasksOf := append([]runner.Task{}, l.job.Fallback...)
	for _, p := range l.job.Plays {
		tasksOf = append(tasksOf, p.Tasks...)
	}
	for _, t := range tasksOf {
		if v, ok := t.Mod.(tasks.LoginSource); ok {
			logins, _ := v.SafetyLogins(l.plan.pb.Dir)
			for _, lg := range logins {
				if lg.User == user {
					return lg.KeyFile
				}
			}
		}
	}
	return ""
}

// pathTarget is the target of a fresh login as user by one path into the
// host of base: with keyFile, only that key and no agent; without, as the
// control connection authenticates.
func pathTarget(p *plan, base transport.Target, user, keyFile string, path engine.Path) (transport.Target, error) {
	t := base
	t.User = user
	if keyFile != "" {
		t.IdentityFiles = []string{keyFile}
		t.NoAgent = true
		t.IdentitiesOnly = true
	}
	if path.Port != 0 {
		t.Port = path.Port
	}
	if path.Address != "" {
		t.Host = path.Address
	}
	if path.Jump != "" {
		jh, ok := p.inv.Host(path.Jump)
		if !ok {
			return t, fmt.Errorf("jump host %q is not in the inventory", path.Jump)
		}
		jt, err := transport.Resolve(jh.Name, jh.Vars, p.sshCfg)
		if err != nil {
			return t, fmt.Errorf("jump host %s: %w", path.Jump, err)
		}
		t.Jumps = append(append([]transport.Target{}, jt.Jumps...), jt)
	}
	return t, nil
}

var _ engine.PortPinner = (*loginDialer)(nil)

// PinPort implements engine.PortPinner: secondary_sshd's port must present
// the host key verified on this host's control connection, and is then
// recorded in the run's known_hosts file under the address it is reached
// by (its listen address, or the host's own).
func (l *loginDialer) PinPort(ctx context.Context, addr string, port int, record bool) (engine.PortPin, error) {
	host := l.job.Target.Host
	if ip, err := netip.ParseAddr(addr); err == nil && !ip.IsUnspecified() {
		host = ip.String()
	}
	var want ssh.PublicKey
	if v, ok := l.plan.hostKeys.Load(l.job.Name); ok {
		want = v.(ssh.PublicKey)
	}
	pin, err := l.d.PinPort(ctx, l.job.Target, host, port, want, record)
	return engine.PortPin{Host: pin.Host, Addr: host, KnownHosts: pin.KnownHosts, Key: pin.Key, Present: pin.Present, Recorded: pin.Recorded}, err
}
