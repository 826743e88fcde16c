package audit

import (
	"strings"
	"testing"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/tasks"
)

// TestSudoersBackupNotTakenForConfig: the sudoers module keeps the
// previous drop-in as engine.BackupPath (.NAME.breakglass.bak), which sudo
// skips. breakglass's own audit must not take that backup for a sudoers
// file the operator meant to be in force: no sudo-file-ignored finding,
// and above all no fix that installs the previous rules under a name sudo
// reads (they are what the last apply replaced).
func TestSudoersBackupNotTakenForConfig(t *testing.T) {
	h := hostOf(t, "clean")
	bak := engine.BackupPath("/etc/sudoers.d/bg")
	old := "/etc/sudoers.d/.bg.breakglass-old.0123456789ab"
	h.SudoFiles = append(h.SudoFiles,
		SudoFile{Path: "/etc/sudoers.d/bg", Dir: "/etc/sudoers.d", Stat: tasks.PathStat{Exists: true, Mode: 0o100440},
			Content: []byte("admin ALL=(ALL:ALL) ALL\n")},
		// the previous version: passwordless, which the last apply took away
		SudoFile{Path: bak, Dir: "/etc/sudoers.d", Stat: tasks.PathStat{Exists: true, Mode: 0o100440},
			Content: []byte("admin ALL=(ALL:ALL) NOPASSWD: ALL\n")},
		// the same, held by a run killed in the middle of its transaction
		SudoFile{Path: old, Dir: "/etc/sudoers.d", Stat: tasks.PathStat{Exists: true, Mode: 0o100440},
			Content: []byte("admin ALL=(ALL:ALL) NOPASSWD: ALL\n")})
	for _, f := range judge(t, h, "admin", nil) {
		if f.Path != bak && f.Path != old {
			continue
		}
		t.Errorf("breakglass's own file %s is reported: %s %s: %s", f.Path, f.ID, f.Severity, f.Detail)
		if strings.Contains(f.Fix, "install") {
			t.Errorf("and its fix puts the replaced rules back in force: %s", f.Fix)
		}
	}
	// A user sudo refuses: the finding that explains it (sudo-no-rule)
	// must not point at breakglass's own files as a rule sudo skipped,
	// nor fix the refusal by installing them.
	for _, f := range judge(t, h, "admin", func(_ *tasks.UserFacts, x *UserExtras) {
		x.SudoOut = []string{"User admin is not allowed to run sudo on h."}
	}) {
		if strings.Contains(f.Detail+f.Fix, bak) || strings.Contains(f.Detail+f.Fix, old) {
			t.Errorf("%s names breakglass's own file: %s / fix: %s", f.ID, f.Detail, f.Fix)
		}
	}
}
