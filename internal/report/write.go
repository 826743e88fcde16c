package report

import (
	"bufio"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// TextOptions shape the human-readable output.
type TextOptions struct {
	Verbose bool // every task, not only those that changed or failed
	Color   bool
}

const (
	colReset  = "\033[0m"
	colRed    = "\033[31m"
	colGreen  = "\033[32m"
	colYellow = "\033[33m"
)

func paint(on bool, color, s string) string {
	if !on {
		return s
	}
	return color + s + colReset
}

func statusColor(st string) string {
	switch st {
	case StatusOK:
		return colGreen
	case StatusChanged:
		return colYellow
	default:
		return colRed
	}
}

// WriteHost writes one host's result as text.
func WriteHost(w io.Writer, h *Host, o TextOptions) error {
	bw := bufio.NewWriter(w)
	st := h.Status
	fmt.Fprintf(bw, "%s %s (%s)", paint(o.Color, statusColor(st), fmt.Sprintf("%-11s", st)), h.Name, h.Address)
	if h.MS > 0 {
		fmt.Fprintf(bw, " %d ms", h.MS)
	}
	fmt.Fprintln(bw)
	if h.Error != "" {
		fmt.Fprintf(bw, "    error: %s\n", h.Error)
	}
	for _, t := range h.Tasks {
		if !o.Verbose && t.Status == StatusOK {
			continue
		}
		name := t.Name
		if name == "" {
			name = t.Module
		}
		fmt.Fprintf(bw, "  %s %s [%s]\n", paint(o.Color, statusColor(t.Status), fmt.Sprintf("%-9s", t.Status)), name, t.Module)
		for _, c := range t.Changes {
			fmt.Fprintf(bw, "      - %s\n", c.What)
			if c.Diff != "" {
				for _, line := range strings.Split(strings.TrimRight(c.Diff, "\n"), "\n") {
					fmt.Fprintf(bw, "        %s\n", line)
				}
			}
		}
		if t.RolledBack {
			fmt.Fprintf(bw, "      rolled back\n")
		}
		if t.Error != "" {
			fmt.Fprintf(bw, "      error: %s\n", t.Error)
		}
	}
	for _, f := range h.Findings {
		sevColor := map[string]string{SeverityLockout: colRed, SeverityRisk: colYellow, SeverityInfo: colGreen}[f.Severity]
		fmt.Fprintf(bw, "  %s %s", paint(o.Color, sevColor, fmt.Sprintf("%-8s", f.Severity)), f.ID)
		if f.User != "" {
			fmt.Fprintf(bw, " user=%s", f.User)
		}
		if f.Path != "" {
			fmt.Fprintf(bw, " path=%s", f.Path)
		}
		fmt.Fprintf(bw, ": %s\n", f.Detail)
		if f.Fix != "" {
			fmt.Fprintf(bw, "           fix: %s\n", f.Fix)
		}
	}
	for _, a := range h.Access {
		res := "ok"
		switch {
		case a.OK:
		case a.Status == "penalised":
			res = "PENALISED"
		case a.Status == "not-repeated":
			res = "NOT-REPEATED"
		default:
			res = "FAILED"
		}
		sudo := ""
		if a.Sudo != nil {
			sudo = " sudo=" + map[bool]string{true: "ok", false: "FAILED"}[*a.Sudo]
		}
		fmt.Fprintf(bw, "  login %-12s via %-14s %s%s %d ms", a.User, a.Path, res, sudo, a.MS)
		if a.Error != "" {
			fmt.Fprintf(bw, ": %s", a.Error)
		}
		fmt.Fprintln(bw)
	}
	return bw.Flush()
}

// WriteRecap writes a table like Ansible's PLAY RECAP.
func WriteRecap(w io.Writer, r *Report, o TextOptions) error {
	bw := bufio.NewWriter(w)
	width := 4
	for _, h := range r.Hosts {
		if len(h.Name) > width {
			width = len(h.Name)
		}
	}
	fmt.Fprintf(bw, "\nRECAP %s\n", r.Command)
	for _, h := range r.Hosts {
		ok, changed, failed := 0, 0, 0
		for _, t := range h.Tasks {
			switch t.Status {
			case StatusOK:
				ok++
			case StatusChanged:
				changed++
			case StatusFailed:
				failed++
			}
		}
		unreachable := 0
		if h.Status == StatusUnreachable {
			unreachable = 1
		}
		logins := 0
		for _, a := range h.Access {
			if !a.OK {
				logins++
			}
		}
		fmt.Fprintf(bw, "%s : ok=%-3d changed=%-3d failed=%-3d unreachable=%d findings=%-3d failed_logins=%d\n",
			paint(o.Color, statusColor(h.Status), fmt.Sprintf("%-*s", width, h.Name)), ok, changed, failed, unreachable, len(h.Findings), logins)
	}
	s := r.Summary
	fmt.Fprintf(bw, "%d hosts: %d ok, %d changed, %d failed, %d unreachable", s.Hosts, s.OK, s.Changed, s.Failed, s.Unreachable)
	if s.NotDone > 0 {
		fmt.Fprintf(bw, ", %d not done (interrupted)", s.NotDone)
	}
	if r.Check {
		fmt.Fprintf(bw, " (check mode: nothing was changed)")
	}
	fmt.Fprintf(bw, " in %.1fs\n", r.Finished.Sub(r.Started).Seconds())
	return bw.Flush()
}

// WriteText writes every host and the recap.
func WriteText(w io.Writer, r *Report, o TextOptions) error {
	for _, h := range r.Hosts {
		if err := WriteHost(w, h, o); err != nil {
			return err
		}
	}
	return WriteRecap(w, r, o)
}

// WriteJSON writes the versioned JSON report (docs/design.md §7).
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	Skipped   *struct{}     `xml:"skipped,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

func seconds(ms int64) string { return strconv.FormatFloat(float64(ms)/1000, 'f', 3, 64) }

// WriteJUnit writes one test suite per host and one test case per host ×
// check: connection, each task, each finding, each login.
func WriteJUnit(w io.Writer, r *Report) error {
	out := junitSuites{Name: "breakglass " + r.Command, Time: seconds(r.Finished.Sub(r.Started).Milliseconds())}
	for _, h := range r.Hosts {
		s := junitSuite{Name: h.Name, Time: seconds(h.MS)}
		conn := junitCase{Name: "connect", Classname: h.Name}
		if h.Status == StatusUnreachable {
			conn.Error = &junitProblem{Message: "unreachable", Type: "unreachable", Text: h.Error}
		} else if h.Error != "" {
			conn.Failure = &junitProblem{Message: firstLine(h.Error), Text: h.Error}
		}
		s.Cases = append(s.Cases, conn)
		for i, t := range h.Tasks {
			name := t.Name
			if name == "" {
				name = t.Module
			}
			c := junitCase{Name: fmt.Sprintf("task %d: %s [%s]", i+1, name, t.Module), Classname: h.Name, Time: seconds(t.MS)}
			switch t.Status {
			case StatusFailed:
				c.Failure = &junitProblem{Message: firstLine(t.Error), Text: t.Error}
			case StatusSkipped:
				c.Skipped = &struct{}{}
			}
			s.Cases = append(s.Cases, c)
		}
		for _, f := range h.Findings {
			c := junitCase{Name: fmt.Sprintf("%s %s %s", f.ID, f.User, f.Path), Classname: h.Name}
			if f.Severity != SeverityInfo {
				c.Failure = &junitProblem{Message: f.Detail, Type: f.Severity, Text: "fix: " + f.Fix}
			}
			s.Cases = append(s.Cases, c)
		}
		for _, a := range h.Access {
			c := junitCase{Name: fmt.Sprintf("login %s via %s", a.User, a.Path), Classname: h.Name, Time: seconds(a.MS)}
			if !a.OK || (a.Sudo != nil && !*a.Sudo) {
				c.Failure = &junitProblem{Message: firstLine(a.Error), Text: a.Error}
				if a.OK {
					c.Failure.Message = "sudo -n true failed"
				}
			}
			s.Cases = append(s.Cases, c)
		}
		for _, c := range s.Cases {
			s.Tests++
			if c.Failure != nil {
				s.Failures++
			}
			if c.Error != nil {
				s.Errors++
			}
		}
		out.Tests += s.Tests
		out.Failures += s.Failures
		out.Errors += s.Errors
		out.Suites = append(out.Suites, s)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// WriteMetrics writes OpenMetrics text for node_exporter's textfile
// collector.
func WriteMetrics(w io.Writer, r *Report) error {
	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	p("# HELP breakglass_last_run_timestamp_seconds When the last breakglass run finished.\n")
	p("# TYPE breakglass_last_run_timestamp_seconds gauge\n")
	p("breakglass_last_run_timestamp_seconds{command=%s} %d\n", lv(r.Command), r.Finished.Unix())
	p("# HELP breakglass_run_duration_seconds How long the last run took.\n")
	p("# TYPE breakglass_run_duration_seconds gauge\n")
	p("breakglass_run_duration_seconds{command=%s} %.3f\n", lv(r.Command), r.Finished.Sub(r.Started).Seconds())
	p("# HELP breakglass_host_status 1 for the status each host ended in.\n")
	p("# TYPE breakglass_host_status gauge\n")
	for _, h := range r.Hosts {
		for _, st := range []string{StatusOK, StatusChanged, StatusFailed, StatusUnreachable} {
			v := 0
			if h.Status == st {
				v = 1
			}
			p("breakglass_host_status{host=%s,status=%s} %d\n", lv(h.Name), lv(st), v)
		}
	}
	p("# HELP breakglass_access_ok 1 when a real login as user by path worked.\n")
	p("# TYPE breakglass_access_ok gauge\n")
	for _, h := range r.Hosts {
		for _, a := range h.Access {
			p("breakglass_access_ok{host=%s,user=%s,path=%s} %d\n", lv(h.Name), lv(a.User), lv(a.Path), b2i(a.OK))
		}
	}
	p("# HELP breakglass_sudo_ok 1 when sudo -n true worked after the login.\n")
	p("# TYPE breakglass_sudo_ok gauge\n")
	for _, h := range r.Hosts {
		for _, a := range h.Access {
			if a.Sudo != nil {
				p("breakglass_sudo_ok{host=%s,user=%s,path=%s} %d\n", lv(h.Name), lv(a.User), lv(a.Path), b2i(*a.Sudo))
			}
		}
	}
	p("# HELP breakglass_findings Findings by host and severity.\n")
	p("# TYPE breakglass_findings gauge\n")
	for _, h := range r.Hosts {
		counts := map[string]int{SeverityLockout: 0, SeverityRisk: 0, SeverityInfo: 0}
		for _, f := range h.Findings {
			counts[f.Severity]++
		}
		sevs := make([]string, 0, len(counts))
		for s := range counts {
			sevs = append(sevs, s)
		}
		sort.Strings(sevs)
		for _, s := range sevs {
			p("breakglass_findings{host=%s,severity=%s} %d\n", lv(h.Name), lv(s), counts[s])
		}
	}
	p("# EOF\n")
	return bw.Flush()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// labelEscaper escapes an OpenMetrics label value; built once, as building
// a Replacer costs more than using it.
var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// lv quotes an OpenMetrics label value.
func lv(s string) string {
	return `"` + labelEscaper.Replace(s) + `"`
}

// WriteFileAtomic writes a file through a temporary file in the same
// directory, so that a reader (node_exporter, a CI job) never sees half of it.
func WriteFileAtomic(path string, write func(io.Writer) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
