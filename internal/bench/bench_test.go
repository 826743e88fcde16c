package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/breakglass/breakglass/internal/lab"
)

func TestStats(t *testing.T) {
	for _, tt := range []struct {
		samples          []float64
		median, min, max float64
	}{
		{[]float64{3}, 3, 3, 3},
		{[]float64{5, 1, 3}, 3, 1, 5},
		{[]float64{4, 1, 3, 2}, 2.5, 1, 4},
	} {
		st := (&Series{Samples: tt.samples}).Stats()
		if st.Median != tt.median || st.Min != tt.min || st.Max != tt.max || st.N != len(tt.samples) {
			t.Errorf("Stats(%v) = %+v, want median %v min %v max %v", tt.samples, st, tt.median, tt.min, tt.max)
		}
	}
	if st := (&Series{}).Stats(); st.N != 0 {
		t.Errorf("Stats of no samples = %+v", st)
	}
}

func TestCellAndRatio(t *testing.T) {
	good := &Series{Samples: []float64{2, 1, 3}}
	slow := &Series{Samples: []float64{20, 20, 20}}
	failed := &Series{Samples: []float64{0.1}, Failures: []string{"exit 2"}}
	na := &Series{NA: "not installed"}
	for _, tt := range []struct {
		name string
		got  string
		want string
	}{
		{"cell", cell(good), "2.00 (1.00–3.00)"},
		{"cell one", cell(&Series{Samples: []float64{74.2}}), "74.2"},
		{"cell failed", cell(failed), "FAILED 1/2 runs"},
		{"cell na", cell(na), "n/a"},
		{"cell none", cell(nil), "—"},
		{"ratio faster", ratio(good, slow), "0.1 (10× faster)"},
		{"ratio slower", ratio(slow, good), "10"},
		// A failed run never yields a ratio: a fast broken run must not look good.
		{"ratio failed", ratio(failed, slow), "n/a"},
		{"ratio na", ratio(good, na), "n/a"},
		{"ratio none", ratio(good, nil), "—"},
	} {
		if tt.got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestParseRecap(t *testing.T) {
	out := []byte(`PLAY RECAP *********************************************************************
bench01                    : ok=6    changed=5    unreachable=0    failed=0    skipped=0    rescued=0    ignored=0
bench02                    : ok=1    changed=0    unreachable=0    failed=1    skipped=0    rescued=0    ignored=0
`)
	l := &lab.Lab{Hosts: []*lab.Host{{Name: "bench01"}, {Name: "bench02"}}}
	rc := parseRecap(out)
	if got := rc["bench01"]; got != (recap{OK: 6, Changed: 5}) {
		t.Errorf("bench01: %+v", got)
	}
	if err := checkRecap(&proc{Stdout: out}, l, true); err == nil || !strings.Contains(err.Error(), "bench02: failed=1") {
		t.Errorf("checkRecap with a failed host: %v", err)
	}
	l.Hosts = l.Hosts[:1]
	if err := checkRecap(&proc{Stdout: out}, l, true); err != nil {
		t.Errorf("checkRecap fresh: %v", err)
	}
	if err := checkRecap(&proc{Stdout: out}, l, false); err == nil {
		t.Error("checkRecap: a converged host that changed passed")
	}
	l.Hosts = append(l.Hosts, &lab.Host{Name: "bench03"})
	if err := checkRecap(&proc{Stdout: out}, l, true); err == nil || !strings.Contains(err.Error(), "bench03 missing") {
		t.Errorf("checkRecap with a host missing: %v", err)
	}
	if err := checkRecap(&proc{Code: 2, Stdout: out}, l, true); err == nil {
		t.Error("checkRecap: exit 2 passed")
	}
}

func TestCheckReport(t *testing.T) {
	report := func(status string, loginOK bool) *bgReport {
		return &bgReport{Hosts: []bgHost{{Name: "bench01", Status: status, Access: []bgAccess{{User: "bg-ops1", OK: loginOK}}}}}
	}
	for _, tt := range []struct {
		name   string
		p      *proc
		rep    *bgReport
		want   []string
		errSub string
	}{
		{"ok", &proc{}, report("changed", true), []string{"changed"}, ""},
		{"exit code", &proc{Code: 2, Stderr: []byte("breakglass: boom")}, report("changed", true), []string{"changed"}, "exit 2: breakglass: boom"},
		{"no report", &proc{}, nil, []string{"changed"}, "no JSON report"},
		{"status", &proc{}, report("ok", true), []string{"changed"}, "is ok, want changed"},
		{"login", &proc{}, report("changed", false), []string{"changed"}, "login bg-ops1 failed"},
	} {
		err := checkReport(tt.p, tt.rep, 1, tt.want...)
		if (err == nil) != (tt.errSub == "") || (err != nil && !strings.Contains(err.Error(), tt.errSub)) {
			t.Errorf("%s: got %v, want error containing %q", tt.name, err, tt.errSub)
		}
	}
}

func TestMarkdownSaysWhatFailed(t *testing.T) {
	r := &Results{Started: time.Unix(0, 0), Finished: time.Unix(1, 0), Hosts: 2, Forks: 2, Runs: 1}
	r.series(StepApplyFresh, ToolBreakglass, "s", 2).Samples = []float64{1}
	r.series(StepApplyFresh, ToolFloor, "s", 2).Failures = []string{"2 of 2 hosts failed"}
	r.series(StepApplyFresh, ToolAnsible, "s", 2).NA = "apt-get install ansible: no network"
	var b strings.Builder
	r.WriteMarkdown(&b)
	md := b.String()
	for _, want := range []string{
		"| apply, fresh hosts (s) | 1.00 | n/a | FAILED 1/1 runs | n/a | n/a |",
		"floor apply_fresh: FAILED: 2 of 2 hosts failed",
		"ansible apply_fresh: n/a: apt-get install ansible: no network",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
