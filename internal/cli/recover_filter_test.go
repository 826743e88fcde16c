package cli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/breakglass/breakglass/internal/report"
)

// TestRecoverDeniedUserOnLab: admin is listed in AllowUsers but refused by
// DenyUsers. Joining AllowUsers cannot let it in, so recover changes no
// sshd configuration and says to fix it by hand. (It used to add admin to
// AllowUsers under the safety net, keep that proven but useless change,
// and then report admin still locked out.)
func TestRecoverDeniedUserOnLab(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	t.Parallel()
	f := newFleet(t, 1, "", nil)
	pb := filepath.Join(exampleDir(t), "playbook.yml")
	if code, _, _ := runCLI(t, f.args("apply", pb)...); code != 0 {
		t.Fatalf("apply: exit %d", code)
	}
	h := f.lab.Hosts[0]
	if _, err := h.Exec(context.Background(), "printf 'AllowUsers admin bg-ops1 bg-ops2\\nDenyUsers admin\\n' > /etc/ssh/sshd_config.d/10-locked.conf && kill -HUP $(cat /run/sshd.pid) && sleep 0.5", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := sshAs(f, h, "admin", f.lab.AdminKey, "true"); err == nil {
		t.Fatal("admin still logs in")
	}
	config := func() string {
		out, err := h.Exec(context.Background(), "cd /etc/ssh && md5sum sshd_config sshd_config.d/*", nil)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	before := config()
	code, out, stderr := runCLI(t, f.args("recover", pb, "--user", "admin", "--yes")...)
	if code != report.ExitFailed {
		t.Errorf("recover: exit %d, want %d", code, report.ExitFailed)
	}
	if !strings.Contains(out+stderr, "DenyUsers") || !strings.Contains(out+stderr, "fix by hand") {
		t.Errorf("recover does not say DenyUsers refuses admin and needs a hand:\n%s\n%s", out, stderr)
	}
	if after := config(); after != before {
		t.Errorf("recover changed sshd's configuration:\nbefore\n%s\nafter\n%s", before, after)
	}
}
