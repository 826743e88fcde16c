package report

import (
	"fmt"
	"io"
	"testing"
	"time"
)

// benchReport is a nightly audit of n hosts: seven tasks each, two logins,
// and a finding on every tenth host.
func benchReport(n int) *Report {
	yes := true
	r := &Report{Version: Version, Command: "audit", Started: time.Unix(0, 0).UTC(), Finished: time.Unix(60, 0).UTC()}
	for i := range n {
		h := &Host{Name: fmt.Sprintf("web%04d", i), Address: fmt.Sprintf("10.0.%d.%d:22", i/250, i%250), MS: 900, RoundTrips: 1}
		for j := range 7 {
			h.Tasks = append(h.Tasks, Task{Name: fmt.Sprintf("task %d", j), Module: "user", Status: StatusOK, Changes: []Change{}, MS: 3})
		}
		for _, u := range []string{"bg-ops1", "bg-ops2"} {
			h.Access = append(h.Access, Access{User: u, Path: "direct", OK: true, Sudo: &yes, MS: 300})
		}
		h.Findings = []Finding{}
		if i%10 == 0 {
			h.Findings = append(h.Findings, Finding{ID: "unsafe-path", Severity: SeverityLockout, User: "admin", Path: "/home/admin",
				Detail: "/home/admin is 0777 (owner admin): sshd refuses admin's keys", Fix: "chmod go-w /home/admin"})
		}
		r.Hosts = append(r.Hosts, h)
	}
	r.Settle()
	return r
}

func BenchmarkWrite1000Hosts(b *testing.B) {
	r := benchReport(1000)
	for _, w := range []struct {
		name  string
		write func(io.Writer, *Report) error
	}{
		{"text", func(w io.Writer, r *Report) error { return WriteText(w, r, TextOptions{}) }},
		{"json", WriteJSON},
		{"junit", WriteJUnit},
		{"metrics", WriteMetrics},
	} {
		b.Run(w.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := w.write(io.Discard, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
