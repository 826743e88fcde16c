package cli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/breakglass/breakglass/internal/report"
)

// TestRecoverOnLab locks admin out four ways, one per host — the original
// incident (home chmod 777, here with ~/.ssh also chowned to another uid
// and chmod 777: two repairs of one directory), an expired account, admin
// dropped from AllowUsers, and admin on a pam_listfile deny list — and
// recovers it through the break-glass users.
func TestRecoverOnLab(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	t.Parallel()
	f := newFleet(t, 4, "", nil)
	dir := exampleDir(t)
	pb := filepath.Join(dir, "playbook.yml")
	if code, _, _ := runCLI(t, f.args("apply", pb)...); code != 0 {
		t.Fatalf("apply: exit %d", code)
	}
	hosts := f.lab.Hosts
	breaks := []string{
		"chmod 777 /home/admin /home/admin/.ssh && chown 4242 /home/admin/.ssh",
		"chage -E 1 admin",
		"printf 'AllowUsers bg-ops1 bg-ops2\\n' > /etc/ssh/sshd_config.d/10-locked.conf && kill -HUP $(cat /run/sshd.pid) && sleep 0.5",
		"sed -i '1i account required pam_listfile.so item=user sense=deny file=/etc/ssh/denied onerr=succeed' /etc/pam.d/sshd && printf 'ghost\\nadmin\\nadmins\\n' >/etc/ssh/denied",
	}
	for i, cmd := range breaks {
		if _, err := hosts[i].Exec(context.Background(), cmd, nil); err != nil {
			t.Fatalf("%s: %s: %v", hosts[i].Name, cmd, err)
		}
		if _, err := sshAs(f, hosts[i], "admin", f.lab.AdminKey, "true"); err == nil {
			t.Fatalf("%s: admin still logs in after %q", hosts[i].Name, cmd)
		}
	}

	before := make([]string, len(hosts))
	for i, h := range hosts {
		before[i] = stateOf(t, h)
	}
	code, _, stderr := runCLI(t, f.args("recover", pb, "--user", "admin")...)
	if code != report.ExitFailed {
		t.Errorf("recover without --yes: exit %d, want 2", code)
	}
	if !strings.Contains(stderr, "--yes") {
		t.Errorf("recover without --yes should say how to apply: %q", stderr)
	}
	for i, h := range hosts {
		if got := stateOf(t, h); got != before[i] {
			t.Errorf("%s: recover without --yes changed the host", h.Name)
		}
	}

	code, out, _ := runCLI(t, f.args("recover", pb, "--user", "admin", "--yes", "--format", "json")...)
	if code != 0 {
		t.Errorf("recover --yes: exit %d, want 0", code)
	}
	r := decodeReport(t, out)
	for _, h := range r.Hosts {
		if h.Status != report.StatusChanged {
			t.Errorf("%s: status %s, want changed", h.Name, h.Status)
		}
	}
	for _, h := range hosts {
		if got, err := sshAs(f, h, "admin", f.lab.AdminKey, "id -un"); err != nil || got != "admin" {
			t.Errorf("%s: admin still locked out after recover: %v %q", h.Name, err, got)
		}
	}
	if _, err := hosts[2].Exec(context.Background(), "sshd -t", nil); err != nil {
		t.Errorf("%s: sshd config invalid after recover: %v", hosts[2].Name, err)
	}
	// Only admin's line left the deny list, the rest of it as it was,
	// the previous version kept.
	if out, err := hosts[3].Exec(context.Background(), "cat /etc/ssh/denied; echo ---; cat /etc/ssh/.denied.breakglass.bak; stat -c '%U:%G %a' /etc/ssh/denied", nil); err != nil || string(out) != "ghost\nadmins\n---\nghost\nadmin\nadmins\nroot:root 644\n" {
		t.Errorf("%s: deny list after recover: %v\n%s", hosts[3].Name, err, out)
	}

	// Nothing left to recover: the user's own login works, exit 0, no change.
	code, out, _ = runCLI(t, f.args("recover", pb, "--user", "admin", "--yes", "--format", "json")...)
	if code != 0 || decodeReport(t, out).Summary.Changes != 0 {
		t.Errorf("recover on healthy hosts: exit %d, %s", code, out)
	}
}
