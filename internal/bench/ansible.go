package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/breakglass/breakglass/internal/lab"
)

// ensureAnsible makes ansible-playbook available, installing Debian's
// ansible package when it is missing. It returns why Ansible cannot be
// measured, or "" when it can, and says so loudly.
func ensureAnsible(ctx context.Context, cfg Config, logf func(string, ...any)) string {
	if cfg.NoAnsible {
		logf("ANSIBLE LEFT OUT (-ansible=false): the ansible column is n/a")
		return "left out with -ansible=false"
	}
	if _, err := exec.LookPath("ansible-playbook"); err == nil {
		return ""
	}
	why := ""
	if os.Geteuid() != 0 {
		why = "ansible-playbook is not installed and installing it needs root (apt-get install ansible)"
	} else {
		logf("ansible-playbook not found: installing Debian's ansible package (apt-get install -y ansible)")
		install := func() error {
			cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "-q", "ansible")
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			out, err := cmd.CombinedOutput()
			if err != nil {
				return fmt.Errorf("apt-get install ansible: %w: %s", err, tail(out, 3))
			}
			return nil
		}
		err := install()
		if err != nil {
			logf("%v; retrying after apt-get update", err)
			if out, uerr := exec.CommandContext(ctx, "apt-get", "update", "-q").CombinedOutput(); uerr != nil {
				logf("apt-get update: %v: %s", uerr, tail(out, 3))
			}
			err = install()
		}
		if err != nil {
			why = err.Error()
		} else if _, err := exec.LookPath("ansible-playbook"); err != nil {
			why = "installed Debian's ansible package, but ansible-playbook is still not in PATH"
		}
	}
	if why != "" {
		logf("!!! ANSIBLE UNAVAILABLE: %s", why)
		logf("!!! the ansible-playbook column is n/a in this run")
	}
	return why
}

// ansibleVersion is `ansible-playbook --version`'s first line and Debian's
// package version.
func ansibleVersion(ctx context.Context) string {
	out, _ := exec.CommandContext(ctx, "ansible-playbook", "--version").Output()
	v := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	if pkg, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f", "${Version}", "ansible").Output(); err == nil && len(pkg) > 0 {
		v += " (Debian ansible " + string(pkg) + ")"
	}
	return v
}

// recapLine is one host's line of Ansible's PLAY RECAP.
var recapLine = regexp.MustCompile(`(?m)^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)`)

// recap is a host's counts from PLAY RECAP.
type recap struct {
	OK, Changed, Unreachable, Failed int
}

// parseRecap reads PLAY RECAP from ansible-playbook's output.
func parseRecap(out []byte) map[string]recap {
	m := map[string]recap{}
	for _, g := range recapLine.FindAllSubmatch(out, -1) {
		n := func(i int) int { v, _ := strconv.Atoi(string(g[i])); return v }
		m[string(g[1])] = recap{OK: n(2), Changed: n(3), Unreachable: n(4), Failed: n(5)}
	}
	return m
}

// checkRecap wants every host of l in the recap, none failed or
// unreachable, and each changed (fresh) or unchanged (converged).
func checkRecap(p *proc, l *lab.Lab, changed bool) error {
	if p.Code != 0 {
		return fmt.Errorf("ansible-playbook exit %d: %s", p.Code, tail(append(p.Stdout, p.Stderr...), 4))
	}
	rc := parseRecap(p.Stdout)
	for _, h := range l.Hosts {
		r, ok := rc[h.Name]
		switch {
		case !ok:
			return fmt.Errorf("host %s missing from PLAY RECAP", h.Name)
		case r.Failed > 0 || r.Unreachable > 0:
			return fmt.Errorf("host %s: failed=%d unreachable=%d", h.Name, r.Failed, r.Unreachable)
		case changed && r.Changed == 0:
			return fmt.Errorf("host %s: fresh, but nothing changed", h.Name)
		case !changed && r.Changed != 0:
			return fmt.Errorf("host %s: converged, but changed=%d", h.Name, r.Changed)
		}
	}
	return nil
}

// ansibleRun is one run of ansible-playbook on fresh hosts, then again on
// the converged ones. Each invocation gets its own ControlPath dir, so the
// second does not reuse the first's persistent connections (as a nightly
// or next-day run would not).
func (b *bencher) ansibleRun(ctx context.Context) error {
	n := b.cfg.Hosts
	dir := filepath.Join(b.cfg.Root, "bench", "ansible")
	return b.withLab(ctx, ToolAnsible, StepApplyFresh, n, func(l *lab.Lab) error {
		for _, step := range []string{StepApplyFresh, StepApplyConverged} {
			work, err := os.MkdirTemp(b.tmp, "ansible-")
			if err != nil {
				return err
			}
			args := []string{
				"-i", l.Inventory,
				"-f", fmt.Sprint(b.cfg.Forks),
				"--ssh-common-args", "-o UserKnownHostsFile=" + l.KnownHosts,
				"-e", "keys_dir=" + b.keysDir,
				filepath.Join(dir, "playbook.yml"),
			}
			env := []string{
				"ANSIBLE_CONFIG=" + filepath.Join(dir, "ansible.cfg"),
				"ANSIBLE_SSH_CONTROL_PATH_DIR=" + filepath.Join(work, "cp"),
				"ANSIBLE_LOCAL_TEMP=" + filepath.Join(work, "tmp"),
				"ANSIBLE_HOME=" + filepath.Join(work, "home"),
				"ANSIBLE_NOCOLOR=1",
				"ANSIBLE_FORCE_COLOR=0",
			}
			p, err := run(ctx, cmdSpec{Name: "ansible-playbook", Args: args, Env: env, Dir: dir})
			if err != nil {
				return err
			}
			check := checkRecap(p, l, step == StepApplyFresh)
			if check == nil && step == StepApplyFresh {
				check = b.checkLogin(ctx, l)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			b.res.series(step, ToolAnsible, "s", n).Command = "ansible-playbook " + strings.Join(args, " ")
			b.record(step, ToolAnsible, n, p.Wall.Seconds(), check)
		}
		return nil
	})
}
