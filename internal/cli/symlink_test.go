package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/breakglass/breakglass/internal/lab"
	"github.com/breakglass/breakglass/internal/report"
	"github.com/breakglass/breakglass/internal/shell"
)

// The attacks of issue 15: alice, an ordinary user without sudo, plants
// symlinks in the directories she owns (~, ~/.ssh) and waits for root to
// follow them. docs/design.md §5: breakglass never follows a symlink inside a
// directory an ordinary user owns; it fails the task, or reports the link,
// and touches nothing outside the user's own files.

// guarded are the files and directories outside alice's own that her links
// point at. None of them may change when breakglass meets her links.
var guarded = []string{
	"/etc", "/home", "/etc/shadow", "/etc/passwd", "/etc/profile.d", "/etc/profile.d/zz-alice.sh",
	"/etc/sudoers.d", "/etc/sudoers.d/admin", "/etc/sudoers.d/authorized_keys",
	"/home/admin", "/home/admin/.profile", "/home/admin/.ssh", "/home/admin/.ssh/authorized_keys",
}

// fingerprint is owner, group, mode, type and content hash of each guarded
// path on h, or "absent". For the directories where a file could be
// planted (not admin's home: logins write there) the hash is of the list
// of names.
func fingerprint(t *testing.T, h *lab.Host) string {
	t.Helper()
	out, err := h.Exec(context.Background(), `for p in `+shell.Join(guarded...)+`; do
	if [ -L "$p" ]; then printf '%s link -> %s\n' "$p" "$(readlink -- "$p")"
	elif [ -d "$p" ]; then case $p in
		/etc/profile.d|/etc/sudoers.d|/home/admin/.ssh) printf '%s %s %s\n' "$p" "$(stat -c '%u %g %a dir' -- "$p")" "$(ls -A -- "$p" | sha256sum)";;
		*) printf '%s %s\n' "$p" "$(stat -c '%u %g %a dir' -- "$p")";;
		esac
	elif [ -e "$p" ]; then printf '%s %s %s\n' "$p" "$(stat -c '%u %g %a %F' -- "$p")" "$(sha256sum < "$p")"
	else printf '%s absent\n' "$p"; fi
done`, nil)
	if err != nil {
		t.Fatalf("%s: fingerprint: %v", h.Name, err)
	}
	return string(out)
}

// asUser runs script on h as user, with that user's ids and groups and
// nothing else: what an unprivileged user can do.
func asUser(t *testing.T, h *lab.Host, user, script string) {
	t.Helper()
	cmd := "setpriv --reuid " + user + " --regid " + user + " --init-groups --reset-env -- /bin/sh -ec " + shell.Quote(script)
	if out, err := h.Exec(context.Background(), cmd, nil); err != nil {
		t.Fatalf("%s: as %s: %s: %v %s", h.Name, user, script, err, out)
	}
}

func mustExec(t *testing.T, h *lab.Host, script string) string {
	t.Helper()
	out, err := h.Exec(context.Background(), script, nil)
	if err != nil {
		t.Fatalf("%s: %s: %v", h.Name, script, err)
	}
	return string(out)
}

// symlinkHost makes alice on h and saves what her attacks could damage,
// so that restore can put it back between cases (today's code damages it,
// and a locked-out admin would spoil every later case).
func symlinkHost(t *testing.T, h *lab.Host) {
	t.Helper()
	mustExec(t, h, `set -e
`+ensureUser("alice", "/home/alice")+`
mkdir -p /home/alice && chmod 0700 /home/alice
chown alice:alice /home/alice
chmod 0700 /home/admin
usermod -p '$6$bgsymlinktest$U2VjcmV0SGFzaE1hcmtlckZvclRoZVN5bWxpbmtUZXN0' root
tar -cpf /root/pristine.tar /etc/shadow /etc/passwd /etc/profile.d /etc/sudoers.d /home/admin /home/alice 2>/dev/null`)
}

// ensureUser makes name an ordinary user with home (not created), bash and
// a password field that allows key logins. The lab's /etc lies over the
// machine's, so the user may exist already.
func ensureUser(name, home string) string {
	return "id -u " + name + " >/dev/null 2>&1 || useradd -M " + name + "\nusermod -d " + home + " -s /bin/bash -p '*' " + name
}

// restore puts back what symlinkHost saved: alice without ~/.ssh, and
// whatever her links let breakglass damage.
func restore(t *testing.T, h *lab.Host) {
	t.Helper()
	mustExec(t, h, `set -e
rm -rf /home/alice /etc/profile.d /etc/sudoers.d /home/admin
tar -xpf /root/pristine.tar -C /
chown root:root /etc /home && chmod 0755 /etc /home`)
}

// plant runs alice's attack: as alice, replace ~/.ssh/authorized_keys
// (file true) or ~/.ssh itself with a symlink to target.
func plant(t *testing.T, h *lab.Host, file bool, target string) string {
	t.Helper()
	mustExec(t, h, "rm -rf /home/alice/.ssh")
	if file {
		asUser(t, h, "alice", "mkdir -m 0700 /home/alice/.ssh && ln -s "+shell.Quote(target)+" /home/alice/.ssh/authorized_keys")
		return "/home/alice/.ssh/authorized_keys"
	}
	asUser(t, h, "alice", "ln -s "+shell.Quote(target)+" /home/alice/.ssh")
	return "/home/alice/.ssh"
}

// unharmed checks what an attack through alice's link to target must
// leave: no file outside alice's own changed (before: fingerprint), nothing
// of /etc/shadow's marker in what breakglass printed, admin still in.
func unharmed(t *testing.T, f *fleet, h *lab.Host, cmd, target, before, printed string) {
	t.Helper()
	if after := fingerprint(t, h); after != before {
		t.Errorf("%s: %s changed files outside alice's own through her link to %s:\nbefore:\n%s\nafter:\n%s", h.Name, cmd, target, before, after)
	}
	if strings.Contains(printed, "bgsymlinktest") {
		t.Errorf("%s: %s printed /etc/shadow's content", h.Name, cmd)
	}
	adminIntact(t, f, h)
}

// adminIntact checks the control user still gets in with a fresh login and
// sudo, and that sudoers is valid.
func adminIntact(t *testing.T, f *fleet, h *lab.Host) {
	t.Helper()
	if got, err := sshAs(f, h, "admin", f.lab.AdminKey, "id -un; sudo -n true && echo sudo-ok"); err != nil || got != "admin\nsudo-ok" {
		t.Errorf("%s: admin no longer logs in with sudo: %v %q", h.Name, err, got)
	}
	if _, err := h.Exec(context.Background(), "visudo -c", nil); err != nil {
		t.Errorf("%s: visudo -c: %v", h.Name, err)
	}
}

// hostErrors is every error message of a host in a report.
func hostErrors(h *report.Host) string {
	msgs := []string{h.Error}
	for _, task := range h.Tasks {
		msgs = append(msgs, task.Error)
	}
	return strings.Join(msgs, "\n")
}

// symlinkFleet starts n hosts, each with alice, and alice's key pair.
func symlinkFleet(t *testing.T, n int) (f *fleet, priv, pub string) {
	t.Helper()
	f = newFleet(t, n, "", nil)
	for _, h := range f.lab.Hosts {
		symlinkHost(t, h)
	}
	priv, pub = sshKeygen(t, t.TempDir(), "alice")
	return f, priv, pub
}

// applyAttacked runs pb with alice's link planted on hosts[0] and checks
// the outcome: that host fails with "symbolic link", hosts[1] converges,
// exit 2, nothing outside alice's files changed, admin still gets in.
func applyAttacked(t *testing.T, f *fleet, pb string, file bool, target string) {
	hosts := f.lab.Hosts
	attacked, clean := hosts[0], hosts[1]
	defer restore(t, attacked)
	plant(t, attacked, file, target)
	before := fingerprint(t, attacked)

	code, out, stderr := runCLI(t, f.args("apply", pb, "--format", "json")...)
	if code != report.ExitFailed {
		t.Errorf("exit %d, want 2", code)
	}
	r := hostsByName(decodeReport(t, out))
	if h := r[attacked.Name]; h == nil || h.Status != report.StatusFailed {
		t.Errorf("%s (alice's link to %s): want status failed, got %+v", attacked.Name, target, h)
	} else if msg := hostErrors(h); !strings.Contains(msg, "symbolic link") {
		t.Errorf("%s: the error does not say \"symbolic link\": %q", attacked.Name, msg)
	}
	if h := r[clean.Name]; h == nil || (h.Status != report.StatusOK && h.Status != report.StatusChanged) {
		t.Errorf("%s (no link): want ok or changed, got %+v", clean.Name, h)
	}
	unharmed(t, f, attacked, "apply", target, before, out+stderr)
}

// TestSymlinkApplyAuthorizedKey: an authorized_key task for alice must not
// write through the links she planted (issue 15 item 1).
func TestSymlinkApplyAuthorizedKey(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	t.Parallel()
	f, priv, pub := symlinkFleet(t, 2)
	play := func(exclusive bool) string {
		x := "false"
		if exclusive {
			x = "true"
		}
		return write(t, f.dir, "key-"+x+".yml", "- hosts: labhosts\n  become: true\n  tasks:\n    - authorized_key: {user: alice, exclusive: "+x+", key: \""+pub+"\"}\n")
	}
	exclusive, additive := play(true), play(false)

	cases := []struct {
		name   string
		pb     string
		file   bool
		target string
	}{
		{"key file to a new profile.d script, exclusive", exclusive, true, "/etc/profile.d/zz-alice.sh"},
		{"key file to a new profile.d script, not exclusive", additive, true, "/etc/profile.d/zz-alice.sh"},
		{"key file to /etc/shadow, not exclusive", additive, true, "/etc/shadow"},
		{"key file to admin's authorized_keys, exclusive", exclusive, true, "/home/admin/.ssh/authorized_keys"},
		{"~/.ssh to /etc/sudoers.d, exclusive", exclusive, false, "/etc/sudoers.d"},
		{"~/.ssh to /etc/sudoers.d, not exclusive", additive, false, "/etc/sudoers.d"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			applyAttacked(t, f, c.pb, c.file, c.target)
		})
	}
	// The clean host really converged: alice logs in there with her key.
	if got, err := sshAs(f, f.lab.Hosts[1], "alice", priv, "id -un"); err != nil || got != "alice" {
		t.Errorf("%s: alice cannot log in on the host without links: %v %q", f.lab.Hosts[1].Name, err, got)
	}
}

// TestSymlinkApplySSHPermissions: ssh_permissions must not chown or chmod
// what alice's links point at (issue 15 item 2). admin's home is 0700, so
// a chown root of it locks admin out.
func TestSymlinkApplySSHPermissions(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	t.Parallel()
	f, _, _ := symlinkFleet(t, 2)
	pb := write(t, f.dir, "perm.yml", "- hosts: labhosts\n  become: true\n  tasks:\n    - ssh_permissions: {users: [alice]}\n")
	cases := []struct {
		name   string
		file   bool
		target string
	}{
		{"key file to admin's .profile", true, "/home/admin/.profile"},
		{"key file to admin's authorized_keys", true, "/home/admin/.ssh/authorized_keys"},
		{"~/.ssh to admin's .ssh", false, "/home/admin/.ssh"},
		{"~/.ssh to /etc", false, "/etc"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			applyAttacked(t, f, pb, c.file, c.target)
		})
	}

	// Not an attack: root made bob's home a link (in root's /home) to a
	// directory elsewhere. sshd follows it, and so may breakglass.
	t.Run("root's symlinked home is followed", func(t *testing.T) {
		priv, pub := sshKeygen(t, t.TempDir(), "bob")
		for _, h := range f.lab.Hosts {
			mustExec(t, h, `set -e
mkdir -m 0755 /home/real
`+ensureUser("bob", "/home/bob")+`
mkdir -m 0700 /home/real/bob
chown bob:bob /home/real/bob
ln -s /home/real/bob /home/bob`)
		}
		bobPB := write(t, f.dir, "bob.yml", "- hosts: labhosts\n  become: true\n  tasks:\n    - authorized_key: {user: bob, exclusive: true, key: \""+pub+"\"}\n    - ssh_permissions: {users: [bob]}\n")
		if code, _, _ := runCLI(t, f.args("apply", bobPB)...); code != 0 {
			t.Errorf("apply for bob, whose home root linked: exit %d, want 0", code)
		}
		for _, h := range f.lab.Hosts {
			if got, err := sshAs(f, h, "bob", priv, "id -un"); err != nil || got != "bob" {
				t.Errorf("%s: bob cannot log in: %v %q", h.Name, err, got)
			}
		}
	})
}

// TestSymlinkRecover: recover --user alice must not chmod or chown what her
// key file's link points at (issue 15 item 3). She is locked out: sshd
// reads the file as alice and cannot.
func TestSymlinkRecover(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	t.Parallel()
	f, priv, _ := symlinkFleet(t, 1)
	h := f.lab.Hosts[0]
	// recover gets in through the verify_access logins: admin here.
	pb := write(t, f.dir, "recover.yml", "- hosts: labhosts\n  become: true\n  tasks:\n    - verify_access:\n        logins:\n          - {user: admin, key_file: "+f.lab.AdminKey+"}\n        paths: [direct]\n")
	for _, target := range []string{"/etc/shadow", "/home/admin/.ssh/authorized_keys"} {
		t.Run("key file to "+target, func(t *testing.T) {
			defer restore(t, h)
			plant(t, h, true, target)
			if _, err := sshAs(f, h, "alice", priv, "true"); err == nil {
				t.Fatal("alice logs in: the lab does not lock her out")
			}
			before := fingerprint(t, h)
			_, out, stderr := runCLI(t, f.args("recover", pb, "--user", "alice", "--key", priv, "--yes", "--format", "json")...)
			decodeReport(t, out)
			unharmed(t, f, h, "recover", target, before, out+stderr)
		})
	}
}

// TestSymlinkAudit: audit must report alice's links as symlink-in-path
// risks, follow none of them, change nothing, and print nothing of what
// they point at (issue 15 item 4).
func TestSymlinkAudit(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	t.Parallel()
	f, _, pub := symlinkFleet(t, 2)
	h0, h1 := f.lab.Hosts[0], f.lab.Hosts[1]
	pb := write(t, f.dir, "audit.yml", "- hosts: labhosts\n  become: true\n  tasks:\n    - authorized_key: {user: alice, key: \""+pub+"\"}\n    - ssh_permissions: {users: [alice]}\n")
	links := map[string][2]string{ // host: link, target
		h0.Name: {plant(t, h0, true, "/etc/shadow"), "/etc/shadow"},
		h1.Name: {plant(t, h1, false, "/home/admin/.ssh"), "/home/admin/.ssh"},
	}
	before := []string{fingerprint(t, h0), fingerprint(t, h1)}
	shadow := mustExec(t, h0, "cat /etc/shadow")

	_, out, stderr := runCLI(t, f.args("audit", pb, "--format", "json")...)
	r := decodeReport(t, out)
	for _, h := range r.Hosts {
		l := links[h.Name]
		var found *report.Finding
		for i, fd := range h.Findings {
			if fd.ID == "symlink-in-path" && fd.User == "alice" && fd.Path == l[0] {
				found = &h.Findings[i]
			}
		}
		switch {
		case found == nil:
			t.Errorf("%s: no symlink-in-path finding for alice's %s -> %s; findings: %+v", h.Name, l[0], l[1], h.Findings)
		case found.Severity != report.SeverityRisk || !strings.Contains(found.Detail, l[1]):
			t.Errorf("%s: want severity risk and the target %s in the detail: %+v", h.Name, l[1], *found)
		}
	}
	for i, h := range []*lab.Host{h0, h1} {
		if after := fingerprint(t, h); after != before[i] {
			t.Errorf("%s: audit changed the host:\nbefore:\n%s\nafter:\n%s", h.Name, before[i], after)
		}
		adminIntact(t, f, h)
	}
	for _, line := range strings.Split(shadow, "\n") {
		// Every shadow line: "name:hash:…". A leak shows the hash field.
		fields := strings.SplitN(line, ":", 3)
		if len(fields) < 3 || len(fields[1]) < 2 {
			continue
		}
		if strings.Contains(out+stderr, fields[0]+":"+fields[1]) || strings.Contains(out+stderr, "bgsymlinktest") {
			t.Errorf("audit output holds /etc/shadow's line for %s", fields[0])
		}
	}
}
