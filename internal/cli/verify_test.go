package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/breakglass/breakglass/internal/report"
)

// TestVerifyOnLab proves verify's grid: every user × path is a real login,
// a user whose home sshd refuses fails on every path while the other
// passes, and min_working decides the host.
func TestVerifyOnLab(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	t.Parallel()
	f := newFleet(t, 1, "", nil)
	dir := exampleDir(t)
	// The example's second way in (port 2222) is in the proof: its own play.
	pb := filepath.Join(dir, "playbook.yml")
	src, err := os.ReadFile(pb)
	if err != nil {
		t.Fatal(err)
	}
	pbText := string(src)
	if !strings.Contains(pbText, "paths: [{port: 2222}]") {
		t.Fatal("example playbook changed shape; update this test")
	}
	// known_hosts lists port 22 only: apply records [addr]:2222 once the
	// emergency port presents the key verified on port 22, so verify's
	// strict logins on port 2222 work with no --accept-new.
	h := f.lab.Hosts[0]
	if code, _, _ := runCLI(t, f.args("apply", pb)...); code != 0 {
		t.Fatalf("apply: exit %d", code)
	}

	adminLog, err := h.Exec(context.Background(), "grep -c 'Accepted publickey for admin' /var/log/auth.log || true", nil)
	if err != nil {
		t.Fatal(err)
	}
	admins := strings.TrimSpace(string(adminLog))
	code, out, _ := runCLI(t, f.args("verify", pb, "--format", "json")...)
	if code != 0 {
		t.Fatalf("verify on a healthy host: exit %d", code)
	}
	if rows := decodeReport(t, out).Hosts[0].Access; len(rows) != 4 {
		t.Fatalf("want 2 users × 2 paths, got %+v", rows)
	}

	if _, err := h.Exec(context.Background(), "chmod 777 /home/bg-ops2", nil); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCLI(t, f.args("verify", pb, "--format", "json")...)
	if code != report.ExitFailed {
		t.Fatalf("verify with bg-ops2 locked out and min_working 2: exit %d, want 2", code)
	}
	// The emergency port reads keys from its own store, not from the home
	// sshd now refuses: bg-ops2 still gets in there.
	for _, a := range decodeReport(t, out).Hosts[0].Access {
		want := a.User == "bg-ops1" || a.Path == "port 2222"
		if a.OK != want {
			t.Errorf("%s via %s: ok=%v, want %v (%s)", a.User, a.Path, a.OK, want, a.Error)
		}
	}
	one := write(t, dir, "playbook-one.yml", strings.Replace(pbText, "min_working: 2", "min_working: 1", -1))
	if code, _, _ := runCLI(t, f.args("verify", one)...); code != 0 {
		t.Errorf("verify with min_working 1 and one user working: exit %d, want 0", code)
	}
	// verify makes only the logins it proves: the inventory's user never
	// logged in during these runs.
	if log, err := h.Exec(context.Background(), "grep -c 'Accepted publickey for admin' /var/log/auth.log || true", nil); err != nil || strings.TrimSpace(string(log)) != admins {
		t.Errorf("admin logins in auth.log: %q before verify, %q after (%v)", admins, log, err)
	}
	// A host that is down is unreachable (exit 4), not failed.
	if err := h.KillSSHD(); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCLI(t, f.args("verify", one, "--format", "json")...)
	if hr := decodeReport(t, out).Hosts[0]; code != report.ExitUnreachable || hr.Status != report.StatusUnreachable || !strings.Contains(hr.Error, "connection refused") {
		t.Errorf("verify of a host that is down: exit %d, %s %q", code, hr.Status, hr.Error)
	}
}
