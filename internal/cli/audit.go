package cli

import (
	"fmt"
	"sort"

	"github.com/breakglass/breakglass/internal/audit"
	"github.com/breakglass/breakglass/internal/report"
	"github.com/breakglass/breakglass/internal/runner"
	"github.com/breakglass/breakglass/tasks"
)

// addAudit appends the audit checks to each host's last play: they run
// after the playbook's tasks (in check mode, so nothing changes) and after
// its verify_access logins, whose failures they try to explain.
func addAudit(o *options, jobs []*runner.Job) {
	for _, job := range jobs {
		// The inventory's own user is examined too: it may be locked out
		// while the run got in as a break-glass user.
		seen := map[string]bool{job.Target.User: true}
		users := []string{job.Target.User}
		for _, p := range job.Plays {
			for _, t := range p.Tasks {
				if a, ok := t.Mod.(tasks.Auditor); ok {
					a.Audit()
				}
				if l, ok := t.Mod.(tasks.UserLister); ok {
					for _, u := range l.ListUsers() {
						if !seen[u] {
							seen[u] = true
							users = append(users, u)
						}
					}
				}
			}
		}
		sort.Strings(users)
		if len(job.Plays) == 0 {
			job.Plays = append(job.Plays, runner.Play{Name: "audit", Become: true})
		}
		last := &job.Plays[len(job.Plays)-1]
		last.Become = true
		last.Tasks = append(last.Tasks, runner.Task{Name: "lockout checks", Module: "audit", Mod: audit.New(audit.Options{Users: users, SudoUsers: sudoUsersOf(job), AllUsers: o.allUsers})})
	}
}

// sudoGranter is a task that gives users sudo (sudoers) or expects them
// to have it (verify_access with sudo: true).
type sudoGranter interface{ GrantsSudo() []string }

// sudoUsersOf names the users audit and recover judge by sudo on job's
// host: the inventory's user and those the playbook gives sudo. Sudo's
// fixes grant root, so no one else gets them.
func sudoUsersOf(job *runner.Job) []string {
	users := []string{job.Target.User}
	for _, p := range job.Plays {
		for _, t := range p.Tasks {
			if g, ok := t.Mod.(sudoGranter); ok {
				users = append(users, g.GrantsSudo()...)
			}
		}
	}
	return users
}

var (
	_ sudoGranter = (*tasks.Sudoers)(nil)
	_ sudoGranter = (*tasks.VerifyAccess)(nil)
)

// driftFindings turns what apply would change on h into findings: the host
// has drifted from the playbook. It settles h's status again.
func driftFindings(h *report.Host, playbook string) {
	for _, t := range h.Tasks {
		if t.Module == "audit" || t.Module == "verify_access" {
			continue
		}
		for _, c := range t.Changes {
			h.Findings = append(h.Findings, report.Finding{
				ID:       "drift",
				Severity: report.SeverityRisk,
				Path:     c.Path,
				Detail:   fmt.Sprintf("%s [%s]: %s", taskName(t), t.Module, c.What),
				Fix:      "breakglass apply -i INVENTORY " + playbook + " --limit " + h.Name,
			})
		}
	}
	report.SortFindings(h.Findings)
	one := report.Report{Hosts: []*report.Host{h}}
	one.Settle()
}

func taskName(t report.Task) string {
	if t.Name != "" {
		return t.Name
	}
	return t.Module
}
