package cli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/breakglass/breakglass/internal/report"
)

// TestControlLoginFallbackOnLab: the inventory's control user (admin) is
// locked out the founding incident's way. audit and apply still reach the
// host, as a break-glass user of the playbook's verify_access task (found
// through tasks.LoginSource), say so with a control-login-failed finding,
// and apply repairs admin's home; admin logs in again afterwards.
func TestControlLoginFallbackOnLab(t *testing.T) {
	f, pb := appliedExample(t)
	h := f.lab.Hosts[0]
	if _, err := h.Exec(context.Background(), "chmod 777 /home/admin", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := sshAs(f, h, "admin", f.lab.AdminKey, "true"); err == nil {
		t.Fatal("sshd still lets admin in: the lab does not reproduce the incident")
	}

	fellBack := func(r *report.Report) bool {
		for _, fd := range r.Hosts[0].Findings {
			if fd.ID == "control-login-failed" && fd.User == "admin" && strings.Contains(fd.Detail, "reached the host as break-glass user bg-ops") {
				return true
			}
		}
		return false
	}
	_, out, _ := runCLI(t, f.args("audit", pb, "--format", "json")...)
	r := decodeReport(t, out)
	if r.Hosts[0].Status == report.StatusUnreachable || !fellBack(r) {
		t.Errorf("audit did not fall back to a break-glass user: status %s, findings %+v", r.Hosts[0].Status, r.Hosts[0].Findings)
	}
	_, out, _ = runCLI(t, f.args("apply", pb, "--format", "json")...)
	if r := decodeReport(t, out); !fellBack(r) {
		t.Errorf("apply did not fall back to a break-glass user: status %s, findings %+v", r.Hosts[0].Status, r.Hosts[0].Findings)
	}
	if got, err := sshAs(f, h, "admin", f.lab.AdminKey, "id -un"); err != nil || got != "admin" {
		t.Errorf("admin still locked out after the apply that fell back: %v %q", err, got)
	}
}

// TestProbeAnswersOnLab: when the control user is locked out and every
// break-glass login is accepted by sshd but its session does not run the
// probe (a shell that prints nothing and succeeds), the host is
// unreachable and the error says what each login answered, not "<nil>";
// and a login whose shell prints without end fails at the probe's bound.
func TestProbeAnswersOnLab(t *testing.T) {
	f, pb := appliedExample(t)
	h := f.lab.Hosts[0]
	if _, err := h.Exec(context.Background(), "chmod 777 /home/admin && usermod -s /bin/true bg-ops1 && usermod -s /bin/true bg-ops2", nil); err != nil {
		t.Fatal(err)
	}
	_, out, _ := runCLI(t, f.args("audit", pb, "--format", "json")...)
	r := decodeReport(t, out)
	if r.Hosts[0].Status != report.StatusUnreachable {
		t.Fatalf("audit reached the host with no working way in: status %s, findings %+v", r.Hosts[0].Status, r.Hosts[0].Findings)
	}
	if e := r.Hosts[0].Error; strings.Contains(e, "<nil>") || !strings.Contains(e, `bg-ops1 via direct: no working session: logged in, but the probe answered ""`) {
		t.Errorf("the error does not say what the break-glass login answered: %s", e)
	}

	// A login whose shell prints without end is cut at the probe's bound
	// (engine.ProbeLimit), not read up to the 16 MiB of a root command.
	noisy := "printf '#!/bin/sh\\nhead -c 1000000 /dev/zero | tr \\\\0 x\\necho\\nexec /bin/sh \"$@\"\\n' >/home/bg-ops1/noisy && chmod 755 /home/bg-ops1/noisy && usermod -s /home/bg-ops1/noisy bg-ops1"
	if _, err := h.Exec(context.Background(), noisy, nil); err != nil {
		t.Fatal(err)
	}
	_, out, _ = runCLI(t, f.args("verify", pb, "--format", "json")...)
	r = decodeReport(t, out)
	cut := false
	for _, a := range r.Hosts[0].Access {
		if a.User == "bg-ops1" && a.Path == "direct" {
			cut = strings.Contains(a.Error, "over the 64 KiB limit")
			if !cut {
				t.Errorf("bg-ops1's noisy login was not cut at the probe's bound: %+v", a)
			}
		}
	}
	if !cut && !t.Failed() {
		t.Errorf("no verify row for bg-ops1 direct: %+v", r.Hosts[0].Access)
	}
}

// appliedExample starts one lab host (skipping under -short) and applies
// the example playbook to it, returning the fleet and the playbook's path.
func appliedExample(t *testing.T) (*fleet, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test")
	}
	t.Parallel()
	f := newFleet(t, 1, "", nil)
	pb := filepath.Join(exampleDir(t), "playbook.yml")
	if code, _, _ := runCLI(t, f.args("apply", pb, "--format", "json")...); code != 0 {
		t.Fatalf("first apply: exit %d", code)
	}
	return f, pb
}
