package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/breakglass/breakglass/internal/lab"
)

// bgReport is the part of breakglass's JSON report (version 1) the bench
// reads.
type bgReport struct {
	Version int      `json:"version"`
	Hosts   []bgHost `json:"hosts"`
}

type bgHost struct {
	Name       string     `json:"name"`
	Status     string     `json:"status"`
	Error      string     `json:"error"`
	MS         int64      `json:"ms"`
	RoundTrips int        `json:"round_trips"`
	Tasks      []bgTask   `json:"tasks"`
	Access     []bgAccess `json:"access"`
}

type bgTask struct {
	Name   string `json:"name"`
	Module string `json:"module"`
	Error  string `json:"error"`
	MS     int64  `json:"ms"`
}

type bgAccess struct {
	User  string `json:"user"`
	OK    bool   `json:"ok"`
	Error string `json:"error"`
	MS    int64  `json:"ms"`
}

// breakglass runs `breakglass COMMAND` of the example playbook on l.
func (b *bencher) breakglass(ctx context.Context, l *lab.Lab, command string, forks int, extra ...string) (*proc, *bgReport, error) {
	args := append([]string{command, "-i", l.Inventory, "--known-hosts", l.KnownHosts, b.playbook,
		"--forks", fmt.Sprint(forks), "--format", "json", "--no-color"}, extra...)
	p, err := run(ctx, cmdSpec{Name: b.cfg.Bin, Args: args})
	if err != nil {
		return p, nil, err
	}
	var rep bgReport
	if jerr := json.NewDecoder(bytes.NewReader(p.Stdout)).Decode(&rep); jerr != nil {
		return p, nil, nil // the caller reports the exit code and stderr
	}
	return p, &rep, nil
}

// checkReport says what is wrong with a breakglass run: every host's
// status (one of want) and logins, then the exit code.
func checkReport(p *proc, rep *bgReport, hosts int, want ...string) error {
	if rep == nil {
		if p.Code != 0 {
			return fmt.Errorf("exit %d: %s", p.Code, tail(p.Stderr, 3))
		}
		return fmt.Errorf("no JSON report on stdout: %s", tail(p.Stdout, 2))
	}
	if len(rep.Hosts) != hosts {
		return fmt.Errorf("report has %d hosts, want %d", len(rep.Hosts), hosts)
	}
	var bad []string
	for _, h := range rep.Hosts {
		if why := hostProblem(h, want); why != "" {
			bad = append(bad, why)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("exit %d, %d of %d hosts: %s", p.Code, len(bad), hosts, bad[0])
	}
	if p.Code != 0 {
		return fmt.Errorf("exit %d: %s", p.Code, tail(p.Stderr, 3))
	}
	return nil
}

// hostProblem says what is wrong with h, or "".
func hostProblem(h bgHost, want []string) string {
	if !slices.Contains(want, h.Status) {
		why := h.Error
		for _, t := range h.Tasks {
			if why == "" && t.Error != "" {
				why = fmt.Sprintf("task %q: %s", t.Name, t.Error)
			}
		}
		return fmt.Sprintf("host %s is %s, want %s: %s", h.Name, h.Status, strings.Join(want, " or "), why)
	}
	for _, a := range h.Access {
		if !a.OK {
			return fmt.Sprintf("host %s: login %s failed: %s", h.Name, a.User, a.Error)
		}
	}
	return ""
}

// breakglassRun is one run of breakglass: apply on fresh hosts, apply on
// the converged hosts, verify, audit.
func (b *bencher) breakglassRun(ctx context.Context) error {
	n := b.cfg.Hosts
	return b.withLab(ctx, ToolBreakglass, StepApplyFresh, n, func(l *lab.Lab) error {
		steps := []struct {
			step, command string
			want          []string
			logins        int // verify_access rows a host must have
		}{
			{StepApplyFresh, "apply", []string{"changed"}, len(bgUsers)},
			{StepApplyConverged, "apply", []string{"ok"}, len(bgUsers)},
			{StepVerify, "verify", []string{"ok"}, len(bgUsers)},
			{StepAudit, "audit", []string{"ok"}, len(bgUsers)},
		}
		for _, s := range steps {
			if s.step == StepAudit && b.auditNA != "" {
				continue
			}
			// Lab hosts share this machine's CPU, so a host's remote
			// commands slow down with the number of hosts: the per-command
			// timeout is raised, as the floor's ssh has none at all.
			p, rep, err := b.breakglass(ctx, l, s.command, b.cfg.Forks, "--timeout", "2m")
			if err != nil {
				return err
			}
			if s.step == StepAudit && p.Code == 1 && bytes.Contains(p.Stderr, []byte("not implemented")) {
				b.auditNA = "`breakglass audit` is not implemented in this build: " + tail(p.Stderr, 1)
				b.res.series(StepAudit, ToolBreakglass, "s", n).NA = b.auditNA
				b.logf("breakglass audit: n/a: %s", tail(p.Stderr, 1))
				continue
			}
			check := checkReport(p, rep, n, s.want...)
			if check == nil {
				check = checkLogins(rep, s.logins)
			}
			if check == nil && s.step == StepApplyFresh {
				check = b.checkLogin(ctx, l)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			b.record(s.step, ToolBreakglass, n, p.Wall.Seconds(), check)
			if s.step == StepApplyFresh {
				rss := b.res.series(StepRSSApply, ToolBreakglass, "MiB", n)
				if check == nil {
					rss.Samples = append(rss.Samples, float64(p.MaxRSSKiB)/1024)
				} else {
					rss.Failures = append(rss.Failures, "apply failed its check")
				}
			}
			if rep != nil { // each run replaces the last one's
				b.setProfile(s.step, rep)
			}
		}
		return nil
	})
}

// checkLogins wants each host to report want logins, all ok.
func checkLogins(rep *bgReport, want int) error {
	for _, h := range rep.Hosts {
		if len(h.Access) != want {
			return fmt.Errorf("host %s reports %d logins, want %d", h.Name, len(h.Access), want)
		}
	}
	return nil
}

// setProfile records where the run spent its time.
func (b *bencher) setProfile(step string, rep *bgReport) {
	p := &Profile{Step: step, Statuses: map[string]int{}}
	var rts, hostMS, loginMS []float64
	taskMS := map[string]float64{}
	taskN := map[string]int{}
	var order []string
	module := map[string]string{}
	for _, h := range rep.Hosts {
		p.Statuses[h.Status]++
		rts = append(rts, float64(h.RoundTrips))
		p.RoundTripsMax = max(p.RoundTripsMax, h.RoundTrips)
		hostMS = append(hostMS, float64(h.MS))
		p.HostMSMax = max(p.HostMSMax, h.MS)
		for _, a := range h.Access {
			loginMS = append(loginMS, float64(a.MS))
		}
		for i, t := range h.Tasks {
			key := fmt.Sprintf("%02d %s", i, t.Name)
			if _, ok := taskN[key]; !ok {
				order = append(order, key)
				module[key] = t.Module
			}
			taskMS[key] += float64(t.MS)
			taskN[key]++
		}
	}
	p.RoundTripsMedian = median(rts)
	p.HostMSMedian = median(hostMS)
	p.LoginMSMedian = median(loginMS)
	sort.Strings(order)
	for _, k := range order {
		name := k[3:]
		if name == "" {
			name = module[k]
		}
		p.TaskMSMean = append(p.TaskMSMean, TaskTime{Task: name, Module: module[k], MS: taskMS[k] / float64(taskN[k])})
	}
	for i, old := range b.res.Profiles {
		if old.Step == step {
			b.res.Profiles[i] = p
			return
		}
	}
	b.res.Profiles = append(b.res.Profiles, p)
}

func median(v []float64) float64 {
	s := Series{Samples: v}
	return s.Stats().Median
}

// bigRun measures breakglass's peak memory at BigHosts hosts: apply (to
// converge them), then audit — or apply's, when audit is n/a.
func (b *bencher) bigRun(ctx context.Context) error {
	n := b.cfg.BigHosts
	b.logf("BIG: %d hosts, forks %d", n, b.cfg.BigForks)
	s := b.res.series(StepRSSBig, ToolBreakglass, "MiB", n)
	s.Command = "breakglass audit"
	return b.withLab(ctx, ToolBreakglass, StepRSSBig, n, func(l *lab.Lab) error {
		timeout := []string{"--timeout", "2m"}
		p, rep, err := b.breakglass(ctx, l, "apply", b.cfg.BigForks, timeout...)
		if err != nil {
			return err
		}
		applyCheck := checkReport(p, rep, n, "changed")
		b.logf("BIG apply, %d hosts: %.1fs, peak RSS %.1f MiB, check: %v", n, p.Wall.Seconds(), float64(p.MaxRSSKiB)/1024, applyCheck)
		b.res.Machine.Notes = append(b.res.Machine.Notes, fmt.Sprintf("BIG: apply of %d hosts (forks %d) took %.1fs, peak RSS %.1f MiB", n, b.cfg.BigForks, p.Wall.Seconds(), float64(p.MaxRSSKiB)/1024))
		if b.auditNA == "" {
			start := time.Now()
			pa, repa, err := b.breakglass(ctx, l, "audit", b.cfg.BigForks, timeout...)
			if err != nil {
				return err
			}
			if pa.Code == 1 && bytes.Contains(pa.Stderr, []byte("not implemented")) {
				b.auditNA = "not implemented"
			} else {
				check := checkReport(pa, repa, n, "ok")
				b.logf("BIG audit, %d hosts: %.1fs, peak RSS %.1f MiB, check: %v", n, time.Since(start).Seconds(), float64(pa.MaxRSSKiB)/1024, check)
				b.res.Machine.Notes = append(b.res.Machine.Notes, fmt.Sprintf("BIG: audit of %d hosts took %.1fs", n, pa.Wall.Seconds()))
				if check != nil {
					s.Failures = append(s.Failures, "audit: "+check.Error())
				} else {
					s.Samples = append(s.Samples, float64(pa.MaxRSSKiB)/1024)
				}
				return nil
			}
		}
		s.Command = "breakglass apply (audit n/a)"
		if applyCheck != nil {
			s.Failures = append(s.Failures, "apply: "+applyCheck.Error())
		} else {
			s.Samples = append(s.Samples, float64(p.MaxRSSKiB)/1024)
		}
		return nil
	})
}
