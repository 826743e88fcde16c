package cli

import (
	"context"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/breakglass/breakglass/internal/report"
)

func TestAuditOnLab(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	t.Parallel()
	f := newFleet(t, 2, "", nil)
	dir := exampleDir(t)
	pb := filepath.Join(dir, "playbook.yml")
	// alice gets an account and a key, and no sudo: audit must not ask
	// for a sudo rule for her, nor suggest one.
	src, err := os.ReadFile(pb)
	if err != nil {
		t.Fatal(err)
	}
	write(t, dir, "playbook.yml", string(src)+`
- name: a user without sudo
  hosts: all
  become: true
  tasks:
    - user: {name: alice, shell: /bin/bash}
    - authorized_key: {user: alice, key_file: keys/bg-ops1.pub}
`)
	if code, _, _ := runCLI(t, f.args("apply", pb)...); code != 0 {
		t.Fatalf("apply: exit %d", code)
	}

	metrics := filepath.Join(t.TempDir(), "breakglass.prom")
	code, out, _ := runCLI(t, f.args("audit", pb, "--format", "json", "--metrics", metrics)...)
	if code != 0 {
		t.Fatalf("audit of converged hosts: exit %d", code)
	}
	r := decodeReport(t, out)
	for _, h := range r.Hosts {
		for _, fd := range h.Findings {
			if fd.Severity != report.SeverityInfo {
				t.Errorf("%s: finding on a converged host: %+v", h.Name, fd)
			}
		}
		if len(h.Access) != 4 {
			t.Errorf("%s: %d logins, want the 2 users × 2 paths of verify_access", h.Name, len(h.Access))
		}
	}
	prom, err := os.ReadFile(metrics)
	if err != nil || !strings.Contains(string(prom), `breakglass_access_ok{host="`+f.lab.Hosts[0].Name+`",user="bg-ops1",path="direct"} 1`) {
		t.Fatalf("metrics: %v\n%s", err, prom)
	}

	// The incident on the first host, and drift on the second.
	h0, h1 := f.lab.Hosts[0], f.lab.Hosts[1]
	if _, err := h0.Exec(context.Background(), "chmod 777 /home/bg-ops2", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := h1.Exec(context.Background(), "rm /etc/sudoers.d/breakglass", nil); err != nil {
		t.Fatal(err)
	}
	before := stateOf(t, h0)
	code, out, _ = runCLI(t, f.args("audit", pb, "--format", "json")...)
	if code != report.ExitFailed {
		t.Fatalf("audit of broken hosts: exit %d, want 2", code)
	}
	if stateOf(t, h0) != before {
		t.Fatal("audit changed a host")
	}
	r = decodeReport(t, out)
	find := func(host, id, user string) *report.Finding {
		for _, h := range r.Hosts {
			if h.Name != host {
				continue
			}
			for i, fd := range h.Findings {
				if fd.ID == id && fd.User == user {
					return &h.Findings[i]
				}
			}
		}
		return nil
	}
	if fd := find(h0.Name, "unsafe-path", "bg-ops2"); fd == nil || fd.Severity != report.SeverityLockout || !strings.Contains(fd.Fix, "chmod go-w /home/bg-ops2") {
		t.Errorf("%s: want unsafe-path lockout for bg-ops2 with its fix, got %+v", h0.Name, fd)
	}
	if fd := find(h1.Name, "drift", ""); fd == nil || !strings.Contains(fd.Detail, "sudoers") {
		t.Errorf("%s: want a drift finding for the removed sudoers file, got %+v", h1.Name, fd)
	}
	if fd := find(h1.Name, "sudo-no-rule", "bg-ops1"); fd == nil {
		t.Errorf("%s: want sudo-no-rule for bg-ops1", h1.Name)
	}
	for _, h := range r.Hosts {
		for _, fd := range h.Findings {
			if fd.User == "alice" || strings.Contains(fd.Fix, "alice ALL=") {
				t.Errorf("%s: a finding about alice, who has no sudo by the playbook: %+v", h.Name, fd)
			}
		}
	}

	code, out, _ = runCLI(t, f.args("audit", pb, "--format", "junit")...)
	var suites struct {
		Failures int `xml:"failures,attr"`
	}
	if err := xml.Unmarshal([]byte(out), &suites); err != nil || suites.Failures == 0 || code != report.ExitFailed {
		t.Errorf("junit: exit %d, failures %d, err %v", code, suites.Failures, err)
	}
}
