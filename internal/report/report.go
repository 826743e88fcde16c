// Package report holds the result of a run and writes it as text, JSON,
// JUnit XML and OpenMetrics. The exit code is computed here, in one place.
package report

import (
	"sort"
	"time"
)

// Version is the version of the JSON report format.
const Version = 1

// Host statuses (docs/design.md §7).
const (
	StatusOK          = "ok"
	StatusChanged     = "changed"
	StatusFailed      = "failed"
	StatusUnreachable = "unreachable"
	StatusSkipped     = "skipped" // tasks only: not run because an earlier one failed
)

// Finding severities.
const (
	SeverityLockout = "lockout"
	SeverityRisk    = "risk"
	SeverityInfo    = "info"
)

// Exit codes (docs/design.md §2), bits so a scheduler can tell them apart.
const (
	ExitOK          = 0
	ExitUsage       = 1
	ExitFailed      = 2
	ExitUnreachable = 4
)

// Report is the result of one command over every selected host.
type Report struct {
	Version  int       `json:"version"`
	Command  string    `json:"command"`
	Check    bool      `json:"check,omitempty"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Hosts    []*Host   `json:"hosts"`
	Summary  Summary   `json:"summary"`
}

// Host is the result for one host. A worker owns its Host and nobody else
// writes to it while the run goes on.
type Host struct {
	Name     string    `json:"name"`
	Address  string    `json:"address"`
	Status   string    `json:"status"`
	Error    string    `json:"error,omitempty"`
	Tasks    []Task    `json:"tasks"`
	Findings []Finding `json:"findings"`
	Access   []Access  `json:"access"`
	MS       int64     `json:"ms"`
	// RoundTrips counts the commands run over the control connection.
	RoundTrips int `json:"round_trips"`
	// NotDone is set when the run was interrupted before this host finished.
	NotDone bool `json:"not_done,omitempty"`
}

// Task is the result of one task on one host.
type Task struct {
	Name       string   `json:"name"`
	Module     string   `json:"module"`
	Status     string   `json:"status"`
	Changes    []Change `json:"changes"`
	Error      string   `json:"error,omitempty"`
	RolledBack bool     `json:"rolled_back,omitempty"`
	MS         int64    `json:"ms"`
}

// Change is one thing a task changed (or would change in check mode).
type Change struct {
	What string `json:"what"`
	Path string `json:"path,omitempty"`
	Diff string `json:"diff,omitempty"`
}

// Finding is one audit result.
type Finding struct {
	ID       string `json:"id"`
	Severity string `json:"severity"`
	User     string `json:"user,omitempty"`
	Path     string `json:"path,omitempty"`
	Detail   string `json:"detail"`
	Fix      string `json:"fix,omitempty"`
}

// Access is one real login attempt.
type Access struct {
	User  string `json:"user"`
	Path  string `json:"path"`
	OK    bool   `json:"ok"`
	Sudo  *bool  `json:"sudo,omitempty"`
	Error string `json:"error,omitempty"`
	MS    int64  `json:"ms"`
	// Status says why a failed login proves nothing about the user:
	// "penalised" (sshd closed it before authentication for this
	// address's PerSourcePenalties) or "not-repeated" (sshd refused the
	// same login earlier in the run, so it was not made again).
	Status string `json:"status,omitempty"`
}

// Summary counts hosts by status.
type Summary struct {
	Hosts       int `json:"hosts"`
	OK          int `json:"ok"`
	Changed     int `json:"changed"`
	Failed      int `json:"failed"`
	Unreachable int `json:"unreachable"`
	NotDone     int `json:"not_done,omitempty"`
	Findings    int `json:"findings"`
	Changes     int `json:"changes"`
}

// Settle derives every host's status from its tasks, findings and access
// rows (unless it is unreachable) and fills the summary.
func (r *Report) Settle() {
	r.Summary = Summary{Hosts: len(r.Hosts)}
	for _, h := range r.Hosts {
		if h.Status != StatusUnreachable {
			h.Status = h.derive()
		}
		switch h.Status {
		case StatusOK:
			r.Summary.OK++
		case StatusChanged:
			r.Summary.Changed++
		case StatusFailed:
			r.Summary.Failed++
		case StatusUnreachable:
			r.Summary.Unreachable++
		}
		if h.NotDone {
			r.Summary.NotDone++
		}
		r.Summary.Findings += len(h.Findings)
		for _, t := range h.Tasks {
			r.Summary.Changes += len(t.Changes)
		}
	}
}

func (h *Host) derive() string {
	if h.Error != "" || h.NotDone {
		return StatusFailed
	}
	changed := false
	for _, t := range h.Tasks {
		switch t.Status {
		case StatusFailed:
			return StatusFailed
		case StatusChanged:
			changed = true
		}
	}
	for _, f := range h.Findings {
		if f.Severity == SeverityLockout || f.Severity == SeverityRisk {
			return StatusFailed
		}
	}
	// A failed login row alone does not fail the host: the verify_access
	// task fails (and so the host) when fewer than min_working users get in.
	if changed {
		return StatusChanged
	}
	return StatusOK
}

// ExitCode is the process exit code for the report (docs/design.md §2): 2 when a
// host failed, 4 when a host was unreachable, 6 for both.
func (r *Report) ExitCode() int {
	code := ExitOK
	for _, h := range r.Hosts {
		st := h.Status
		if st == "" {
			st = h.derive()
		}
		switch st {
		case StatusFailed:
			code |= ExitFailed
		case StatusUnreachable:
			code |= ExitUnreachable
		}
	}
	return code
}

// SortFindings orders a host's findings worst first, then by user and id.
func SortFindings(fs []Finding) {
	rank := map[string]int{SeverityLockout: 0, SeverityRisk: 1, SeverityInfo: 2}
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if rank[a.Severity] != rank[b.Severity] {
			return rank[a.Severity] < rank[b.Severity]
		}
		if a.User != b.User {
			return a.User < b.User
		}
		return a.ID < b.ID
	})
}
