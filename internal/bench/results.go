package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Tools, the columns of the table.
const (
	ToolBreakglass = "breakglass"
	ToolAnsible    = "ansible"
	ToolFloor      = "floor"
)

// Steps, the rows of the table.
const (
	StepApplyFresh     = "apply_fresh"
	StepApplyConverged = "apply_converged"
	StepVerify         = "verify"
	StepAudit          = "audit"
	StepRSSApply       = "rss_apply"
	StepRSSBig         = "rss_big"
	StepLabStart       = "lab_start"
)

// Series is every measured run of one step by one tool. A run whose result
// failed its correctness check is a failure, never a sample: a fast but
// broken run must not look good.
type Series struct {
	Step     string    `json:"step"`
	Tool     string    `json:"tool"`
	Unit     string    `json:"unit"` // "s" or "MiB"
	Hosts    int       `json:"hosts"`
	Samples  []float64 `json:"samples"`
	Failures []string  `json:"failures,omitempty"`
	// NA says why the step was not measured (tool missing, command not
	// implemented, not asked for); Samples and Failures are then empty.
	NA string `json:"na,omitempty"`
	// Command is what ran, for a reader who wants to repeat one sample.
	Command string `json:"command,omitempty"`
}

// Stats summarises the samples.
type Stats struct {
	N                int
	Median, Min, Max float64
}

// Stats returns median, min and max of the samples (N is 0 without any).
func (s *Series) Stats() Stats {
	if len(s.Samples) == 0 {
		return Stats{}
	}
	v := append([]float64(nil), s.Samples...)
	sort.Float64s(v)
	st := Stats{N: len(v), Min: v[0], Max: v[len(v)-1]}
	if n := len(v); n%2 == 1 {
		st.Median = v[n/2]
	} else {
		st.Median = (v[n/2-1] + v[n/2]) / 2
	}
	return st
}

// ok reports whether the series has samples and no failed run.
func (s *Series) ok() bool {
	return s != nil && s.NA == "" && len(s.Failures) == 0 && len(s.Samples) > 0
}

// Machine describes where the numbers were taken.
type Machine struct {
	CPUs       int      `json:"cpus"`
	CPUModel   string   `json:"cpu_model"`
	MemoryMiB  int64    `json:"memory_mib"`
	Kernel     string   `json:"kernel"`
	OpenSSH    string   `json:"openssh"`
	Ansible    string   `json:"ansible"`
	Breakglass string   `json:"breakglass"`
	Commit     string   `json:"commit,omitempty"`
	Go         string   `json:"go"`
	LoadBefore string   `json:"load_before"`
	LoadAfter  string   `json:"load_after"`
	Notes      []string `json:"notes,omitempty"`
}

// Profile is where breakglass spent its time in one run of a step: the
// median over hosts of round trips (commands) per host, and each task's
// mean time per host.
type Profile struct {
	Step             string         `json:"step"`
	RoundTripsMedian float64        `json:"round_trips_per_host_median"`
	RoundTripsMax    int            `json:"round_trips_per_host_max"`
	HostMSMedian     float64        `json:"host_ms_median"`
	HostMSMax        int64          `json:"host_ms_max"`
	LoginMSMedian    float64        `json:"login_ms_median,omitempty"`
	TaskMSMean       []TaskTime     `json:"task_ms_mean"`
	Statuses         map[string]int `json:"statuses"`
}

// TaskTime is one task's mean time per host.
type TaskTime struct {
	Task   string  `json:"task"`
	Module string  `json:"module"`
	MS     float64 `json:"ms"`
}

// Results is one `make bench`.
type Results struct {
	Version  int        `json:"version"`
	Started  time.Time  `json:"started"`
	Finished time.Time  `json:"finished"`
	Hosts    int        `json:"hosts"`
	Forks    int        `json:"forks"`
	Runs     int        `json:"runs"`
	BigHosts int        `json:"big_hosts,omitempty"`
	Machine  Machine    `json:"machine"`
	Series   []*Series  `json:"series"`
	Profiles []*Profile `json:"breakglass_profiles,omitempty"`
	Errors   []string   `json:"errors,omitempty"`
}

// series returns the series for step and tool, creating it.
func (r *Results) series(step, tool, unit string, hosts int) *Series {
	if s := r.find(step, tool); s != nil {
		return s
	}
	s := &Series{Step: step, Tool: tool, Unit: unit, Hosts: hosts, Samples: []float64{}}
	r.Series = append(r.Series, s)
	return s
}

func (r *Results) find(step, tool string) *Series {
	for _, s := range r.Series {
		if s.Step == step && s.Tool == tool {
			return s
		}
	}
	return nil
}

// WriteFiles writes dir/latest.md and dir/latest.json.
func (r *Results) WriteFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("results dir: %w", err)
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	var md strings.Builder
	r.WriteMarkdown(&md)
	for name, data := range map[string][]byte{"latest.json": append(js, '\n'), "latest.md": []byte(md.String())} {
		path := filepath.Join(dir, name)
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", tmp, err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return nil
}

var stepTitles = map[string]string{
	StepApplyFresh:     "apply, fresh hosts",
	StepApplyConverged: "apply again, converged hosts",
	StepVerify:         "verify (logins + sudo), converged hosts",
	StepAudit:          "audit, converged hosts",
	StepRSSApply:       "peak RSS of breakglass apply",
	StepRSSBig:         "peak RSS of breakglass %s",
	StepLabStart:       "lab start (not a tool: the cost of fresh hosts)",
}

// WriteMarkdown writes the report: the table, ratios, machine, profiles.
func (r *Results) WriteMarkdown(w io.Writer) {
	fmt.Fprintf(w, "# make bench: breakglass, ansible-playbook and the OpenSSH floor\n\n")
	fmt.Fprintf(w, "%s, %d hosts, forks %d, %d runs per step (fresh lab hosts for every fresh run). Cells: median (min–max) over the runs.\n\n",
		r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Hosts, r.Forks, r.Runs)
	fmt.Fprintf(w, "| step | breakglass | ansible-playbook | OpenSSH floor | breakglass/ansible | breakglass/floor |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|\n")
	for _, step := range []string{StepApplyFresh, StepApplyConverged, StepVerify, StepAudit, StepRSSApply, StepRSSBig, StepLabStart} {
		var cells [3]*Series
		any := false
		for i, tool := range []string{ToolBreakglass, ToolAnsible, ToolFloor} {
			cells[i] = r.find(step, tool)
			any = any || cells[i] != nil
		}
		if !any {
			continue
		}
		title := stepTitles[step]
		unit := ""
		for _, s := range cells {
			if s != nil {
				unit = s.Unit
				if step == StepRSSBig {
					cmd := strings.TrimPrefix(s.Command, "breakglass ")
					if cmd == "" {
						cmd = "audit"
					}
					title = fmt.Sprintf(title, cmd)
				}
				if step == StepRSSBig || step == StepRSSApply {
					title = fmt.Sprintf("%s, %d hosts", title, s.Hosts)
				}
				break
			}
		}
		r1, r2 := ratio(cells[0], cells[1]), ratio(cells[0], cells[2])
		if step == StepLabStart {
			r1, r2 = "—", "—"
		}
		fmt.Fprintf(w, "| %s (%s) | %s | %s | %s | %s | %s |\n", title, unit,
			cell(cells[0]), cell(cells[1]), cell(cells[2]), r1, r2)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "A ratio below 1 means breakglass is faster; `N× faster` is its inverse. `—`: not part of that tool's comparison.\n\n")

	var notes []string
	for _, s := range r.Series {
		for _, f := range s.Failures {
			notes = append(notes, fmt.Sprintf("%s %s: FAILED: %s", s.Tool, s.Step, f))
		}
		if s.NA != "" && s.Step != StepRSSBig {
			notes = append(notes, fmt.Sprintf("%s %s: n/a: %s", s.Tool, s.Step, s.NA))
		}
		if s.Step == StepRSSBig && s.NA != "" {
			notes = append(notes, s.NA)
		}
	}
	notes = append(notes, r.Errors...)
	if len(notes) > 0 {
		fmt.Fprintf(w, "## Notes\n\n")
		for _, n := range notes {
			fmt.Fprintf(w, "- %s\n", strings.ReplaceAll(n, "\n", " ⏎ "))
		}
		fmt.Fprintln(w)
	}

	fmt.Fprintf(w, "## What each column measures\n\n")
	fmt.Fprintf(w, "- **breakglass**: wall time of `breakglass apply|verify|audit -i INV --known-hosts KH examples/playbook.yml --forks %d --timeout 2m --format json` (2 users, keys, ssh_permissions, sudoers, then 2 fresh verify logins with sudo per host); each run checked: exit 0, every host changed (fresh) or ok (converged), every login ok, and a plain `ssh bg-ops1@host sudo -n true` works. RSS: the child's `Maxrss` from wait4.\n", r.Forks)
	fmt.Fprintf(w, "- **ansible-playbook**: `bench/ansible/playbook.yml` (same users, keys, permissions, sudoers with `validate: visudo -cf %%s`; no verify logins, so it does less) with `bench/ansible/ansible.cfg` (pipelining, ControlPersist=60s, host_key_checking, gathering=explicit), `-f %d`, the lab's INI inventory and known_hosts; checked: exit 0, PLAY RECAP all hosts changed (fresh) or changed=0 (converged), no failed/unreachable, and the same `ssh bg-ops1@host` check.\n", r.Forks)
	fmt.Fprintf(w, "- **OpenSSH floor**: %d hosts in parallel, each: one `ssh admin@host sudo -n sh -s` carrying `bench/floor.sh` (useradd×2, keys, chmod, visudo -cf + install), then its 2 verify logins (`ssh -i KEY bg-opsN@host 'id -un; sudo -n true'`) in parallel — the handshakes breakglass makes (1 control + 2 logins). ssh options: `-o KexAlgorithms=curve25519-sha256 -o ControlMaster=no -o BatchMode=yes -o IdentitiesOnly=yes`, host keys checked. The verify row is the 2 logins alone. Every ssh must succeed and print its user.\n\n", r.Hosts)

	m := r.Machine
	fmt.Fprintf(w, "## Machine\n\n")
	fmt.Fprintf(w, "- %d CPUs: %s; %d MiB memory; kernel %s\n", m.CPUs, m.CPUModel, m.MemoryMiB, m.Kernel)
	fmt.Fprintf(w, "- %s; ansible: %s; breakglass %s", m.OpenSSH, m.Ansible, m.Breakglass)
	if m.Commit != "" {
		fmt.Fprintf(w, " (commit %s)", m.Commit)
	}
	fmt.Fprintf(w, "; %s\n", m.Go)
	fmt.Fprintf(w, "- load average before: %s; after: %s (the machine may be shared: a high load makes every column slower and noisier)\n", m.LoadBefore, m.LoadAfter)
	fmt.Fprintf(w, "- %s – %s\n", r.Started.Format(time.RFC3339), r.Finished.Format(time.RFC3339))
	for _, n := range m.Notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
	fmt.Fprintln(w)

	if len(r.Profiles) > 0 {
		fmt.Fprintf(w, "## Where breakglass spends its time (last run of each step)\n\n")
		fmt.Fprintf(w, "| step | round trips/host (median, max) | host time ms (median, max) | login ms (median) | statuses |\n|---|---|---|---|---|\n")
		for _, p := range r.Profiles {
			fmt.Fprintf(w, "| %s | %.0f, %d | %.0f, %d | %.0f | %s |\n", p.Step, p.RoundTripsMedian, p.RoundTripsMax, p.HostMSMedian, p.HostMSMax, p.LoginMSMedian, statuses(p.Statuses))
		}
		fmt.Fprintln(w)
		for _, p := range r.Profiles {
			if len(p.TaskMSMean) == 0 {
				continue
			}
			var parts []string
			for _, t := range p.TaskMSMean {
				parts = append(parts, fmt.Sprintf("%s (%s) %.0f", t.Task, t.Module, t.MS))
			}
			fmt.Fprintf(w, "- %s, mean ms per host by task: %s\n", p.Step, strings.Join(parts, "; "))
		}
		fmt.Fprintln(w)
	}
}

func statuses(m map[string]int) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// cell renders a series: "4.31 (4.10–4.62)", "n/a", "FAILED", "—".
func cell(s *Series) string {
	switch {
	case s == nil:
		return "—"
	case s.NA != "":
		return "n/a"
	case len(s.Failures) > 0:
		return fmt.Sprintf("FAILED %d/%d runs", len(s.Failures), len(s.Failures)+len(s.Samples))
	case len(s.Samples) == 0:
		return "no runs"
	}
	st := s.Stats()
	if st.N == 1 {
		return num(st.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", num(st.Median), num(st.Min), num(st.Max))
}

// ratio renders a/b of the medians, when both are good.
func ratio(a, b *Series) string {
	if a == nil || b == nil {
		return "—"
	}
	if !a.ok() || !b.ok() {
		return "n/a"
	}
	x, y := a.Stats().Median, b.Stats().Median
	if y == 0 {
		return "n/a"
	}
	q := x / y
	if q < 1 && q > 0 {
		return fmt.Sprintf("%.3g (%.3g× faster)", q, 1/q)
	}
	return fmt.Sprintf("%.3g", q)
}

// num prints 3 significant digits, without exponent for usual sizes.
func num(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}
