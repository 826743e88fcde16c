package tasks

import (
	"context"
	"fmt"
	"os/exec"
	"path"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/lab"
)

// TestOwnFile: the names breakglass leaves beside files it writes
// (backups of this and earlier versions, a killed run's temp files) are
// known as its own, and nothing else is.
func TestOwnFile(t *testing.T) {
	for name, want := range map[string]bool{
		path.Base(engine.BackupPath("/etc/sudoers.d/bg")): true,
		"bg.breakglass.bak":               true,
		"bg.breakglass-bak":               true,
		".bg.breakglass-bak":              true,
		".bg.breakglass-tmp.Ab12Cd":       true,
		".bg.breakglass-tmp":              true,
		".bg.breakglass-new.0123456789ab": true,
		".bg.breakglass-old.0123456789ab": true,
		".bg.breakglass-restore.4242":     true,
		".bg.breakglass-old.x.y":          false,
		"bg":                              false,
		"bg.conf":                         false,
		"bg.breakglass-tmp.Ab12Cd":        false,
		"README":                          false,
		"bg.bak":                          false,
	} {
		if got := engine.OwnFile(name); got != want {
			t.Errorf("engine.OwnFile(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestBackupPath(t *testing.T) {
	for p, want := range map[string]string{
		"/etc/sudoers.d/breakglass":                   "/etc/sudoers.d/.breakglass.breakglass.bak",
		"/etc/ssh/sshd_config.d/00-breakglass.conf":   "/etc/ssh/sshd_config.d/.00-breakglass.conf.breakglass.bak",
		"/home/bg/.ssh/authorized_keys":               "/home/bg/.ssh/.authorized_keys.breakglass.bak",
		"/etc/init.d/breakglass-sshd":                 "/etc/init.d/.breakglass-sshd.breakglass.bak",
		"/etc/systemd/system/breakglass-sshd.service": "/etc/systemd/system/.breakglass-sshd.service.breakglass.bak",
	} {
		if got := engine.BackupPath(p); got != want {
			t.Errorf("engine.BackupPath(%s) = %s, want %s", p, got, want)
		}
		// The shell's name for it (bg_bak, which the writers on the host
		// use) is the same.
		out, err := exec.Command("sh", "-c", engine.Nofollow+"\nbg_bak \"$1\"", "sh", p).CombinedOutput()
		if err != nil || strings.TrimSuffix(string(out), "\n") != want {
			t.Errorf("bg_bak %s: %q %v, want %s", p, out, err, want)
		}
	}
}

// TestBackupsOnHost changes every kind of file the modules replace (the
// sshd drop-in, a sudoers drop-in, authorized_keys, the emergency sshd's
// config, its unit and privsep drop-in or its init script), a second time
// where the first made it, then finds every backup left beside them: each
// has the one name (engine.BackupPath), the owner and mode of the file it was the
// previous version of, and no reader of its directory takes it: sshd -T,
// sudo -l -U, visudo -c and systemd answer the same with the backups moved
// away, and the key only in a backup does not log in.
func TestBackupsOnHost(t *testing.T) {
	for _, k := range []lab.Kind{lab.Namespace, lab.Bookworm} {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()
			var x *sshdLab
			if k.Systemd() {
				x = newSystemdSSHDLab(t, k)
			} else {
				x = newSSHDLab(t)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			r := x.h.Runner()
			run := func(m Module, env *Env) *Result {
				t.Helper()
				env.Facts = &Facts{}
				res, err := runModule(ctx, r, env, m)
				if err != nil {
					t.Fatalf("%T: %v", m, err)
				}
				if !res.Changed {
					t.Fatalf("%T: nothing changed", m)
				}
				return res
			}
			want := map[string]string{} // original → owner and mode its backup must have
			// Every name a backup could have, in the directories
			// breakglass writes; those the host had before are left out.
			const findBackups = `find /etc /home /root -xdev \( -name '*bak*' -o -name '*~' -o -name '*.old' -o -name '*.orig' \) -print | sort`
			before := x.sh(t, findBackups, nil)

			// sshd: the second value replaces the first, which a reader
			// of the backup would take first ('.' sorts before '0').
			for _, lvl := range []string{"VERBOSE", "DEBUG1"} {
				run(mustSSHD(t, fmt.Sprintf(`{settings: {LogLevel: %s}}`, lvl)), x.env())
			}
			want["/etc/ssh/sshd_config.d/00-breakglass.conf"] = "root:root 644"

			// sudoers: the rule moves from bg-ops1 to bg-ops2; the backup
			// still grants bg-ops1.
			plain := &Env{Host: x.h.Name, ControlUser: "admin", ClientAddr: "127.0.0.1", ServerAddr: x.h.Addr, ServerPort: x.h.Port}
			for _, u := range []string{"bg-ops1", "bg-ops2"} {
				run(mustSudoers(t, fmt.Sprintf("{name: bg, users: [%s], nopasswd: true}", u)), plain)
			}
			want["/etc/sudoers.d/bg"] = "root:root 440"

			// authorized_keys: bg-ops2's key is replaced; the old one is
			// only in the backup.
			newKey, newPub := acctKeyPair(t, "bg-ops2@new")
			run(mustAuthorizedKey(t, fmt.Sprintf("{user: bg-ops2, key: %q, exclusive: true}", newPub)), plain)
			want["/home/bg-ops2/.ssh/authorized_keys"] = "bg-ops2:bg-ops2 600"

			// The emergency sshd: the config changes with allow_users; its
			// unit, privsep drop-in or init script are edited by hand and
			// put back.
			task := `{port: 2222, allow_users: [%s], listen: ` + x.h.Addr + `}`
			runSecondary(t, x, fmt.Sprintf(task, "bg-ops1, bg-ops2"))
			s := mustSecondary(t, fmt.Sprintf(task, "bg-ops1"))
			want[s.ConfigPath()] = "root:root 644"
			edited := []string{s.InitPath()}
			if k.Systemd() {
				edited = []string{s.UnitPath(), secondaryPrivsepDropIn}
			}
			for _, f := range edited {
				x.sh(t, "echo '# edited by hand' >>"+f, nil)
				want[f] = strings.TrimSpace(x.sh(t, "stat -c '%U:%G %a' "+f, nil))
			}
			if res := runSecondary(t, x, fmt.Sprintf(task, "bg-ops1")); !res.Changed {
				t.Fatal("secondary_sshd: nothing changed")
			}

			// Every backup left: exactly one per file replaced, by the
			// one name.
			old := map[string]bool{}
			for _, f := range strings.Split(before, "\n") {
				old[f] = true
			}
			var found, wantNames []string
			for _, f := range strings.Split(x.sh(t, findBackups, nil), "\n") {
				if !old[f] {
					found = append(found, f)
				}
			}
			for f := range want {
				wantNames = append(wantNames, engine.BackupPath(f))
			}
			sort.Strings(wantNames)
			if strings.Join(found, "\n") != strings.Join(wantNames, "\n") {
				t.Errorf("backups found:\n%s\nwant:\n%s", strings.Join(found, "\n"), strings.Join(wantNames, "\n"))
			}
			for f, om := range want {
				b := engine.BackupPath(f)
				if got := strings.TrimSpace(x.sh(t, "stat -c '%U:%G %a' "+b+" 2>&1 || :", nil)); got != om {
					t.Errorf("%s: %s, want %s (as %s)", b, got, om, path.Base(f))
				}
				if x.sh(t, "cmp -s "+f+" "+b+" && echo same || :", nil) != "" {
					t.Errorf("%s is the same as %s: not a previous version", b, f)
				}
			}

			// No reader takes a backup: the same answers without them.
			readers := `sshd -T | sort; sudo -l -U bg-ops1; sudo -l -U bg-ops2; visudo -c`
			if k.Systemd() {
				readers += `; systemctl daemon-reload; systemctl show -p FragmentPath -p DropInPaths ssh.service ` + s.Unit() + `; systemctl list-unit-files --no-legend --all | sort`
			}
			with := x.sh(t, readers, nil)
			move, back := []string{"mkdir -p /run/bg-moved"}, []string{}
			for f := range want {
				move = append(move, fmt.Sprintf("mv %s /run/bg-moved/%s", engine.BackupPath(f), path.Base(f)))
				back = append(back, fmt.Sprintf("mv /run/bg-moved/%s %s", path.Base(f), engine.BackupPath(f)))
			}
			without := x.sh(t, strings.Join(move, " && ")+" && { "+readers+"; }; "+strings.Join(back, "; "), nil)
			if with != without {
				t.Errorf("the readers answer differently with the backups:\n%s\nwithout:\n%s", with, without)
			}
			// and they answer as the new files say, not the backups
			if !strings.Contains(with, "loglevel DEBUG\n") || strings.Contains(with, "loglevel VERBOSE") {
				t.Errorf("sshd -T:\n%s", with)
			}
			if got := x.sh(t, "sudo -l -U bg-ops1; sudo -l -U bg-ops2", nil); strings.Count(got, "NOPASSWD") != 1 || !strings.Contains(got, "User bg-ops1 is not allowed") {
				t.Errorf("sudo -l -U:\n%s", got)
			}
			if err := x.login("bg-ops2", 0); err == nil {
				t.Error("bg-ops2's old key, only in the backup, still logs in")
			}
			x.keys["bg-ops2"] = newKey
			x.mustLogin(t, 0, "bg-ops2")
			if err := x.login("bg-ops2", 2222); err == nil {
				t.Error("bg-ops2 logs in on the emergency port: its sshd read the old config")
			}
			x.mustLogin(t, 2222, "bg-ops1")

			// init.d and cron.d by their own readers, on a script written
			// twice by bg_write in a directory of its own: systemd's sysv
			// generator makes a service of the script alone, run-parts
			// (whose name rule Debian's cron applies to cron.d) lists
			// the script alone.
			if k.Systemd() {
				d := strings.TrimSpace(x.sh(t, "mktemp -d", nil))
				f := d + "/init/bg-backup-test"
				x.sh(t, "mkdir -m 0755 "+d+"/init "+d+"/rc "+d+"/out", nil)
				for _, v := range []string{"1", "2"} {
					if err := engine.RunAction(ctx, r, []string{"bg_write", f, "root", "0755", "#!/bin/sh\n### BEGIN INIT INFO\n# Provides: bg-backup-test\n# Default-Start: 2 3 4 5\n# Default-Stop: 0 1 6\n### END INIT INFO\n# version " + v + "\n"}); err != nil {
						t.Fatal(err)
					}
				}
				got := x.sh(t, "ls -A "+d+"/init && SYSTEMD_SYSVINIT_PATH="+d+"/init SYSTEMD_SYSVRCND_PATH="+d+"/rc /usr/lib/systemd/system-generators/systemd-sysv-generator "+d+"/out "+d+"/out "+d+"/out 2>/dev/null; ls "+d+"/out; run-parts --list "+d+"/init; run-parts --list --lsbsysinit "+d+"/init; rm -rf "+d, nil)
				if want := ".bg-backup-test.breakglass.bak\nbg-backup-test\nbg-backup-test.service\n" + f + "\n" + f + "\n"; got != want {
					t.Errorf("an init script and its backup: ls, the generator's units, run-parts:\n%s\nwant:\n%s", got, want)
				}
			}
		})
	}
}
