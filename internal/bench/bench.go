// Package bench is `make bench`: breakglass side by side with
// ansible-playbook tuned as its docs advise, and with the floor — plain
// parallel OpenSSH logins making the handshakes breakglass makes and
// carrying the same change as one script — on real lab hosts (see
// internal/lab), in one run, with fresh hosts for every fresh run.
//
// Every step is measured Runs times; a run counts only when its result
// passes a cheap correctness check (exit code, report, and a real login as
// a break-glass user), so a fast but broken run can never look good. Each
// run's tools are interleaved (breakglass, ansible, floor, then again), so
// noise from a shared machine falls on every column alike.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/breakglass/breakglass/internal/lab"
)

// Config says what to measure. Paths are relative to Root unless absolute.
type Config struct {
	Root      string // the repository: examples/, bench/, bin/
	Bin       string // breakglass binary; default Root/bin/breakglass
	Hosts     int
	Runs      int
	Forks     int    // default Hosts
	BigHosts  int    // > 0: also measure peak RSS at this many hosts
	BigForks  int    // default BigHosts
	OutDir    string // default Root/bench-results
	NoAnsible bool   // leave ansible out (reported as n/a, with this reason)
	Log       io.Writer
}

// BigDefault is the host count of the opt-in memory run (BIG=1).
const BigDefault = 1000

// ErrFailedRuns is returned by Run when a measured run failed its check.
var ErrFailedRuns = errors.New("some runs failed their correctness check")

type bencher struct {
	cfg       Config
	res       *Results
	tmp       string
	playbook  string // temp copy of examples/playbook.yml, keys beside it
	keysDir   string
	pubs      map[string]string // user → public key line
	ansibleNA string
	auditNA   string
}

// breakglass users of the example playbook, whose logins prove a run.
var bgUsers = []string{"bg-ops1", "bg-ops2"}

// Run measures everything cfg asks for, writes OutDir/latest.{md,json}
// and returns the results. The error is ErrFailedRuns when some run failed
// its check (the results still say which), or what stopped the bench.
func Run(ctx context.Context, cfg Config) (*Results, error) {
	if cfg.Hosts < 1 || cfg.Runs < 1 {
		return nil, fmt.Errorf("want at least 1 host and 1 run, got hosts=%d runs=%d", cfg.Hosts, cfg.Runs)
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.Forks == 0 {
		cfg.Forks = cfg.Hosts
	}
	if cfg.BigForks == 0 {
		cfg.BigForks = cfg.BigHosts
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, err
	}
	cfg.Root = root
	if cfg.Bin == "" {
		cfg.Bin = filepath.Join(cfg.Root, "bin", "breakglass")
	}
	if cfg.OutDir == "" {
		cfg.OutDir = filepath.Join(cfg.Root, "bench-results")
	}
	if err := lab.Check(); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	if _, err := os.Stat(cfg.Bin); err != nil {
		return nil, fmt.Errorf("breakglass binary: %w (make build makes it)", err)
	}

	b := &bencher{cfg: cfg, res: &Results{
		Version: 1, Started: time.Now(), Hosts: cfg.Hosts, Forks: cfg.Forks, Runs: cfg.Runs, BigHosts: cfg.BigHosts,
	}}
	tmp, err := os.MkdirTemp("", "breakglass-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	b.tmp = tmp
	if err := b.prepare(ctx); err != nil {
		return nil, err
	}
	// Other people's `make build` may replace the binary while the bench
	// runs: every run uses this copy.
	bin := filepath.Join(tmp, "breakglass")
	if err := copyFile(cfg.Bin, bin); err != nil {
		return nil, fmt.Errorf("breakglass binary: %w", err)
	}
	b.cfg.Bin = bin
	b.res.Machine = machine(ctx, cfg.Root, bin)

	b.ansibleNA = ensureAnsible(ctx, cfg, b.logf)
	if b.ansibleNA == "" {
		b.res.Machine.Ansible = ansibleVersion(ctx)
	} else {
		b.res.Machine.Ansible = "n/a (" + b.ansibleNA + ")"
	}

	err = b.all(ctx)
	b.res.Finished = time.Now()
	b.res.Machine.LoadAfter = loadavg()
	if err != nil {
		b.res.Errors = append(b.res.Errors, "bench stopped: "+err.Error())
	}
	if werr := b.res.WriteFiles(cfg.OutDir); werr != nil {
		return b.res, errors.Join(err, werr)
	}
	if err != nil {
		return b.res, err
	}
	for _, s := range b.res.Series {
		if len(s.Failures) > 0 {
			return b.res, ErrFailedRuns
		}
	}
	return b.res, nil
}

func (b *bencher) logf(format string, args ...any) {
	fmt.Fprintf(b.cfg.Log, "bench: "+format+"\n", args...)
}

// prepare copies the example playbook into a temp dir and generates the
// break-glass users' keys beside it, as a user of the playbook would.
func (b *bencher) prepare(ctx context.Context) error {
	src := filepath.Join(b.cfg.Root, "examples", "playbook.yml")
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("example playbook: %w", err)
	}
	// The benchmark measures the first play (users, keys, permissions,
	// sudoers, verify), which the Ansible playbook mirrors; the second way
	// in has no Ansible counterpart.
	if i := strings.Index(string(data), "\n- name: a second way in"); i >= 0 {
		data = data[:i+1]
	}
	dir := filepath.Join(b.tmp, "playbook")
	b.keysDir = filepath.Join(dir, "keys")
	if err := os.MkdirAll(b.keysDir, 0o700); err != nil {
		return err
	}
	b.playbook = filepath.Join(dir, "playbook.yml")
	if err := os.WriteFile(b.playbook, data, 0o644); err != nil {
		return err
	}
	b.pubs = map[string]string{}
	for _, u := range bgUsers {
		key := filepath.Join(b.keysDir, u)
		out, err := exec.CommandContext(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", u+"@breakglass-bench", "-f", key).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ssh-keygen %s: %w: %s", key, err, strings.TrimSpace(string(out)))
		}
		pub, err := os.ReadFile(key + ".pub")
		if err != nil {
			return err
		}
		b.pubs[u] = strings.TrimSpace(string(pub))
	}
	return nil
}

// all runs every step: run i of each tool, then run i+1.
func (b *bencher) all(ctx context.Context) error {
	if b.cfg.NoAnsible && b.ansibleNA == "" {
		b.ansibleNA = "left out with -ansible=false"
	}
	if b.ansibleNA != "" {
		for _, step := range []string{StepApplyFresh, StepApplyConverged} {
			b.res.series(step, ToolAnsible, "s", b.cfg.Hosts).NA = b.ansibleNA
		}
	}
	for i := 1; i <= b.cfg.Runs; i++ {
		b.logf("run %d/%d, %d hosts", i, b.cfg.Runs, b.cfg.Hosts)
		if err := b.breakglassRun(ctx); err != nil {
			return err
		}
		if b.ansibleNA == "" {
			if err := b.ansibleRun(ctx); err != nil {
				return err
			}
		}
		if err := b.floorRun(ctx); err != nil {
			return err
		}
		// What is measured so far, in case the rest never finishes.
		b.res.Finished = time.Now()
		if err := b.res.WriteFiles(b.cfg.OutDir); err != nil {
			return err
		}
	}
	if b.cfg.BigHosts > 0 {
		return b.bigRun(ctx)
	}
	b.res.series(StepRSSBig, ToolBreakglass, "MiB", BigDefault).NA = fmt.Sprintf(
		"peak RSS at %d hosts not measured (it starts %d lab hosts): run `make bench BIG=1`", BigDefault, BigDefault)
	return nil
}

// withLab starts a fresh lab of n hosts, records how long that took under
// tool, runs fn and stops the lab, whatever happens. A lab that does not
// start is a failure of step for tool, not the end of the bench.
func (b *bencher) withLab(ctx context.Context, tool, step string, n int, fn func(*lab.Lab) error) error {
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute+time.Duration(n)*200*time.Millisecond)
	start := time.Now()
	l, err := lab.Start(sctx, lab.Options{Hosts: n, Prefix: "bench"})
	cancel()
	if l != nil {
		defer func() {
			if err := l.Stop(); err != nil {
				b.logf("%v", err)
				b.res.Errors = append(b.res.Errors, err.Error())
			}
		}()
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.logf("%s: %v", tool, err)
		b.res.series(step, tool, "s", n).Failures = append(b.res.series(step, tool, "s", n).Failures, err.Error())
		return nil
	}
	up := time.Since(start)
	b.res.series(StepLabStart, tool, "s", n).Samples = append(b.res.series(StepLabStart, tool, "s", n).Samples, up.Seconds())
	b.logf("%s: %d fresh lab hosts up in %.1fs", tool, n, up.Seconds())
	return fn(l)
}

// record adds one run's outcome to the series: a sample when check is nil,
// else a failure.
func (b *bencher) record(step, tool string, hosts int, seconds float64, check error) {
	s := b.res.series(step, tool, "s", hosts)
	if check != nil {
		s.Failures = append(s.Failures, check.Error())
		b.logf("%s %s: %.2fs FAILED: %v", tool, step, seconds, check)
		return
	}
	s.Samples = append(s.Samples, seconds)
	b.logf("%s %s: %.2fs ok", tool, step, seconds)
}

// sshArgs are the OpenSSH options of every plain ssh the bench runs: the
// floor's, and the logins that check a run. Host keys are verified.
func sshArgs(l *lab.Lab, key string) []string {
	return []string{
		"-F", "none", "-q",
		"-o", "KexAlgorithms=curve25519-sha256",
		"-o", "ControlMaster=no",
		"-o", "BatchMode=yes",
		"-o", "IdentitiesOnly=yes",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile=" + l.KnownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "ConnectTimeout=30",
		"-i", key,
	}
}

// login logs in to h as user with the user's own key, checks `id -un` and
// `sudo -n true`. It is both the floor's verify login and a run's check.
func (b *bencher) login(ctx context.Context, l *lab.Lab, h *lab.Host, user string) error {
	args := append(sshArgs(l, filepath.Join(b.keysDir, user)), "-p", fmt.Sprint(h.Port), user+"@"+h.Addr, "id -un && sudo -n true")
	p, err := run(ctx, cmdSpec{Name: "ssh", Args: args})
	if err != nil {
		return err
	}
	if p.Code != 0 {
		return fmt.Errorf("ssh %s@%s (%s): exit %d: %s", user, h.Name, h.Addr, p.Code, tail(p.Stderr, 3))
	}
	if got := strings.TrimSpace(string(p.Stdout)); got != user {
		return fmt.Errorf("ssh %s@%s: id -un says %q", user, h.Name, got)
	}
	return nil
}

// checkLogin is the cheap proof that a run really converged a host: a
// break-glass user logs in to a random host and has sudo.
func (b *bencher) checkLogin(ctx context.Context, l *lab.Lab) error {
	h := l.Hosts[rand.IntN(len(l.Hosts))]
	if err := b.login(ctx, l, h, bgUsers[0]); err != nil {
		return fmt.Errorf("check login: %w", err)
	}
	return nil
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o755)
}
