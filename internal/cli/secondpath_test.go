package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/breakglass/breakglass/internal/lab"
)

// plainSSH runs cmd as user by port with the plain OpenSSH client: only the
// given key, no agent, no config, the host key checked strictly against
// knownHosts (no alias: [addr]:port must be in it).
func plainSSH(ctx context.Context, knownHosts string, h *lab.Host, port int, user, key, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ssh", "-F", "/dev/null",
		"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+knownHosts, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
		"-p", fmt.Sprint(port), "-i", key, user+"@"+h.Addr, cmd).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// isRoot reports whether a login printed a line "root" (a login into an
// unreadable home prints complaints around it).
func isRoot(out string, err error) bool {
	return err == nil && slices.Contains(strings.Split(out, "\n"), "root")
}

// secondPathFault is one way a host's main path breaks. The matrix
// expects root through the emergency port with root_login (root), and
// says whether a break-glass user still gets root there with sudo.
type secondPathFault struct {
	name   string
	script string // run as root in the host
	// sysd replaces script on a systemd host ("": the same), where
	// ssh.service, not a pid file, runs the main sshd.
	sysd string
	// reboot: after the fault the host boots again (a systemd host
	// really reboots; a namespace host's emergency sshd dies, /run is
	// emptied and the runlevel-2 rc link runs as sysvinit's rc runs it).
	reboot bool
	// restore undoes the fault, so that the host can take another one
	// (a host is proven healthy again before it does); "" for faults that
	// are not undone, each the last fault of its host. On a systemd host
	// ssh.service is restarted after it, which also forgets OpenSSH 10's
	// per-source penalties for the refused logins the fault caused.
	restore string
	// survives: root gets in through the emergency port; false for the
	// faults the second path shares (the README says so).
	survives bool
	sudo     bool // bg-ops1 + sudo -n works through the emergency port
}

// The fault matrix: after one apply with secondary_sshd (root_login:
// true), each fault is made on a host of its own, or after a fault that
// was undone there and a proof that the host is healthy again (see
// secondPathHosts); the test first
// proves that no one gets root through port 22 (admin, bg-ops1, bg-ops2 by
// sudo, root by any of their keys), then that a plain ssh with strict host
// key checking against the known_hosts file apply was given gets root
// through the emergency port. The README's table is this list.
var secondPathFaults = []secondPathFault{
	{name: "homes world-writable (chmod 777 /home/*)", script: "chmod 777 /home/*", survives: true, sudo: true},
	{name: "home tree unreadable (chmod 000 /home)", script: "chmod 000 /home", restore: "chmod 755 /home", survives: true, sudo: true},
	{name: "authorized_keys deleted (rm -r /home/*/.ssh)", script: "rm -rf /home/*/.ssh", survives: true, sudo: true},
	{name: "main sshd_config broken, sshd restarted", script: "echo 'Bogus yes' >> /etc/ssh/sshd_config; kill $(cat /run/sshd.pid); sleep 0.3; ! /usr/sbin/sshd -E /var/log/auth.log",
		sysd: "echo 'Bogus yes' >> /etc/ssh/sshd_config; ! systemctl restart ssh.service", survives: true, sudo: true},
	{name: "main sshd stopped", script: "kill $(cat /run/sshd.pid)", sysd: "systemctl stop ssh.socket ssh.service",
		restore: "[ -d /run/systemd/system ] || /usr/sbin/sshd -E /var/log/auth.log", survives: true, sudo: true},
	{name: "main config lets no one in (AllowUsers nobody), reloaded", script: "printf 'AllowUsers nobody\\n' > /etc/ssh/sshd_config.d/00-lockdown.conf; kill -HUP $(cat /run/sshd.pid)",
		sysd:    "printf 'AllowUsers nobody\\n' > /etc/ssh/sshd_config.d/00-lockdown.conf; systemctl reload ssh.service",
		restore: "rm /etc/ssh/sshd_config.d/00-lockdown.conf; [ -d /run/systemd/system ] || kill -HUP $(cat /run/sshd.pid)", survives: true, sudo: true},
	{name: "main AuthorizedKeysFile moved, reloaded", script: "printf 'AuthorizedKeysFile /etc/ssh/keys/%%u\\n' > /etc/ssh/sshd_config.d/00-moved.conf; kill -HUP $(cat /run/sshd.pid)",
		sysd:    "printf 'AuthorizedKeysFile /etc/ssh/keys/%%u\\n' > /etc/ssh/sshd_config.d/00-moved.conf; systemctl reload ssh.service",
		restore: "rm /etc/ssh/sshd_config.d/00-moved.conf; [ -d /run/systemd/system ] || kill -HUP $(cat /run/sshd.pid)", survives: true, sudo: true},
	{name: "PAM account stack refuses (pam_deny in /etc/pam.d/sshd)", script: "sed -i '1i account requisite pam_deny.so' /etc/pam.d/sshd", restore: "sed -i '1d' /etc/pam.d/sshd", survives: true, sudo: true},
	{name: "PAM session module missing in /etc/pam.d/sshd", script: "sed -i '1i session required pam_breakglass_missing.so' /etc/pam.d/sshd", restore: "sed -i '1d' /etc/pam.d/sshd", survives: true, sudo: true},
	// OpenSSH 9.2 re-executes sshd for each connection, which reads the
	// host keys again; OpenSSH 10's listener keeps them loaded until it
	// reloads or restarts, which the fault therefore includes.
	{name: "host keys regenerated (rm + ssh-keygen -A), main sshd reloaded", script: "rm -f /etc/ssh/ssh_host_*; ssh-keygen -A >/dev/null; kill -HUP $(cat /run/sshd.pid)",
		sysd: "rm -f /etc/ssh/ssh_host_*; ssh-keygen -A >/dev/null; systemctl reload ssh.service", survives: true, sudo: true},
	{name: "host keys deleted, main sshd restarted", script: "rm -f /etc/ssh/ssh_host_*; kill $(cat /run/sshd.pid); sleep 0.3; ! /usr/sbin/sshd -E /var/log/auth.log",
		sysd: "rm -f /etc/ssh/ssh_host_*; ! systemctl restart ssh.service", survives: true, sudo: true},
	{name: "sudo broken (/etc/sudoers world-writable: sudo refuses to run)", script: "chmod 666 /etc/sudoers", restore: "chmod 440 /etc/sudoers", survives: true, sudo: false},
	{name: "sudo binary unusable (mode 000, in this host only)", script: "cp /usr/bin/sudo /tmp/sudo-000 && chmod 000 /tmp/sudo-000 && mount --bind /tmp/sudo-000 /usr/bin/sudo", survives: true, sudo: false},
	{name: "accounts expired (chage -E 0 admin bg-ops1 bg-ops2)", script: "for u in admin bg-ops1 bg-ops2; do chage -E 0 $u; done",
		restore: "for u in admin bg-ops1 bg-ops2; do chage -E -1 $u; done", survives: true, sudo: false},
	{name: "/etc/nologin present", script: "echo 'maintenance' > /etc/nologin", restore: "rm /etc/nologin", survives: true, sudo: false},
	{name: "privilege separation dir /run/sshd removed", script: "rm -rf /run/sshd", survives: false},
	// A running sshd still serves with its binary gone (it re-executes
	// itself from the open file); the main one is restarted and cannot
	// start. The emergency one keeps serving until it is restarted itself.
	{name: "sshd binary unusable, main sshd restarted (in this host only)", script: "cp /usr/sbin/sshd /tmp/sshd-000 && chmod 000 /tmp/sshd-000 && mount --bind /tmp/sshd-000 /usr/sbin/sshd && kill $(cat /run/sshd.pid); sleep 0.3; ! /usr/sbin/sshd -E /var/log/auth.log",
		sysd: "cp /usr/sbin/sshd /tmp/sshd-000 && chmod 000 /tmp/sshd-000 && mount --bind /tmp/sshd-000 /usr/sbin/sshd && ! systemctl restart ssh.service", survives: true, sudo: true},
	// The boot: the fault stays, the host starts again, and only what it
	// runs at boot brings the emergency sshd back.
	{name: "homes world-writable, then the host reboots", script: "chmod 777 /home/*", reboot: true, survives: true, sudo: true},
}

// secondPathHosts assigns the faults to hosts: each host first takes a
// fault that can be undone, then one that is not, so the matrix needs
// about half as many hosts. The founding incident is the last fault of
// the first host (the recover below needs it there).
func secondPathHosts() [][]int {
	var undo, rest []int
	for i, f := range secondPathFaults {
		if f.restore != "" {
			undo = append(undo, i)
		} else {
			rest = append(rest, i)
		}
	}
	var hosts [][]int
	for len(undo) > 0 || len(rest) > 0 {
		var h []int
		if len(undo) > 0 {
			h, undo = append(h, undo[0]), undo[1:]
		}
		if len(rest) > 0 {
			h, rest = append(h, rest[0]), rest[1:]
		}
		hosts = append(hosts, h)
	}
	return hosts
}

func TestSecondPathFaultMatrixOnLab(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	t.Parallel()
	for _, k := range lab.Kinds() {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()
			secondPathFaultMatrix(t, k)
		})
	}
}

// secondPathFaultMatrix runs the matrix on hosts of kind k, one host per
// fault, all side by side.
func secondPathFaultMatrix(t *testing.T, k lab.Kind) {
	start := time.Now()
	hosts := secondPathHosts()
	f := newFleetKind(t, k, len(hosts), "", nil)
	dir := exampleDir(t)
	pb := filepath.Join(dir, "playbook.yml") // root_login: true, port 2222
	before, err := os.ReadFile(f.knownHosts)
	if err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCLI(t, f.args("apply", pb, "--forks", "8")...)
	if code != 0 {
		t.Fatalf("apply: exit %d", code)
	}
	t.Logf("lab and apply: %s", time.Since(start).Round(time.Second))
	for _, h := range f.lab.Hosts {
		if !strings.Contains(out, fmt.Sprintf("ssh -p 2222 -o StrictHostKeyChecking=yes -o UserKnownHostsFile=%s root@%s", f.knownHosts, h.Addr)) {
			t.Errorf("%s: the report does not print the emergency command", h.Name)
		}
	}
	// apply recorded [addr]:2222, hashed as the file is, and nothing else.
	after, err := os.ReadFile(f.knownHosts)
	if err != nil {
		t.Fatal(err)
	}
	added := strings.Split(strings.TrimSpace(strings.TrimPrefix(string(after), string(before))), "\n")
	if len(added) != len(f.lab.Hosts) || strings.Contains(string(after), ":2222") {
		t.Errorf("known_hosts gained %d lines (want %d, hashed):\n%s", len(added), len(f.lab.Hosts), strings.Join(added, "\n"))
	}
	keys := map[string]string{"admin": f.lab.AdminKey, "bg-ops1": filepath.Join(dir, "keys", "bg-ops1"), "bg-ops2": filepath.Join(dir, "keys", "bg-ops2")}
	ctx := context.Background()
	// The faults run side by side, each on its own host (goroutines, not
	// parallel subtests: -parallel is GOMAXPROCS, 2 here).
	rows := make([]string, len(secondPathFaults))
	errs := make([][]string, len(secondPathFaults))
	where := make([]string, len(secondPathFaults))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 10) // every host at once: about 9
	for hi, faults := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			h := f.lab.Hosts[hi]
			for n, i := range faults {
				where[i] = h.Name
				if n > 0 {
					prev := secondPathFaults[faults[n-1]]
					if err := secondPathRestore(ctx, f.knownHosts, h, prev, keys); err != nil {
						errs[i] = []string{err.Error()}
						return
					}
				}
				t0 := time.Now()
				rows[i], errs[i] = secondPathFaultRun(ctx, f.knownHosts, h, secondPathFaults[i], keys)
				rows[i] += fmt.Sprintf(" (%s, %.1fs)", h.Name, time.Since(t0).Seconds())
				if len(errs[i]) > 0 {
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, fault := range secondPathFaults {
		if rows[i] == "" && errs[i] == nil {
			errs[i] = []string{"not run: an earlier fault on its host failed"}
		}
		for _, e := range errs[i] {
			t.Errorf("%s (%s): %s", fault.name, where[i], e)
		}
	}
	if k == lab.Namespace {
		// breakglass itself gets in the second way: with every home
		// world-writable, recover reaches the host through port 2222 (the
		// example's verify_access logins) and repairs admin's home.
		h0 := f.lab.Hosts[0]
		if last := hosts[0][len(hosts[0])-1]; !strings.HasPrefix(secondPathFaults[last].name, "homes world-writable") {
			t.Fatal("the first host's last fault is not the founding incident")
		}
		code, _, _ = runCLI(t, f.args("recover", pb, "--limit", h0.Name, "--user", "admin", "--yes")...)
		// Port 22 was proven cut for every user above: the only way in left
		// was port 2222.
		if code != 0 {
			t.Errorf("recover with every home world-writable: exit %d", code)
		}
		if got, err := plainSSH(ctx, f.knownHosts, h0, h0.Port, "admin", keys["admin"], "id -un"); err != nil || got != "admin" {
			t.Errorf("admin after recover: %v: %q", err, got)
		}
	}
	t.Logf("fault matrix on %s in %s:\n%s", k, time.Since(start).Round(time.Second), strings.Join(rows, "\n"))
}

// secondPathBoot is what boots a namespace host again, as far as the
// emergency sshd is concerned: it dies, /run is emptied (its pid file and
// /run/sshd with it; the main sshd, which its init started, is left), and
// the runlevel-2 rc links breakglass installed run as sysvinit's rc runs
// them: "start", in init's bare environment.
const secondPathBoot = `pid=$(cat /run/sshd-breakglass.pid) && kill -KILL "$pid" && while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
rm -rf /run/sshd-breakglass.pid /run/sshd
for s in /etc/rc2.d/S[0-9][0-9]*; do
	case $s in *breakglass*) env -i PATH=/sbin:/usr/sbin:/bin:/usr/bin RUNLEVEL=2 PREVLEVEL=N "$s" start ;; esac
done`

// secondPathRestore undoes fault on h (restarting ssh.service on a
// systemd host) and proves the host healthy again: admin gets root
// through port 22 with the plain client.
func secondPathRestore(ctx context.Context, knownHosts string, h *lab.Host, fault secondPathFault, keys map[string]string) error {
	script := fault.restore
	if h.Kind.Systemd() {
		script += "\nsystemctl restart ssh.service"
	}
	if _, err := h.Exec(ctx, script, nil); err != nil {
		return fmt.Errorf("undo %q: %v", fault.name, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := plainSSH(ctx, knownHosts, h, h.Port, "admin", keys["admin"], "sudo -n id -un")
		if isRoot(got, err) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after undoing %q the main path is still cut: admin + sudo through port 22: %v: %q", fault.name, err, got)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// secondPathFaultRun makes one fault on h and returns the matrix row and
// what went against the expectation.
func secondPathFaultRun(ctx context.Context, knownHosts string, h *lab.Host, fault secondPathFault, keys map[string]string) (string, []string) {
	var errs []string
	// Healthy first: root through the emergency port.
	if got, err := plainSSH(ctx, knownHosts, h, 2222, "root", keys["bg-ops1"], "id -un"); !isRoot(got, err) {
		return "", []string{fmt.Sprintf("healthy host: root through port 2222: %v: %q", err, got)}
	}
	script := fault.script
	if h.Kind.Systemd() && fault.sysd != "" {
		script = fault.sysd
	}
	if _, err := h.Exec(ctx, script, nil); err != nil {
		return "", []string{fmt.Sprintf("make the fault: %v", err)}
	}
	if fault.reboot {
		var err error
		if h.Kind.Systemd() {
			rctx, cancel := context.WithTimeout(ctx, 90*time.Second)
			err = h.Reboot(rctx)
			cancel()
		} else {
			_, err = h.Exec(ctx, secondPathBoot, nil)
		}
		if err != nil {
			return "", []string{fmt.Sprintf("reboot: %v", err)}
		}
	}
	// The main path is cut: no one gets root through port 22 (the six
	// logins side by side).
	var cut []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, u := range []string{"admin", "bg-ops1", "bg-ops2"} {
		for _, try := range [][2]string{{u, "sudo -n id -un"}, {"root", "id -un"}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if isRoot(plainSSH(ctx, knownHosts, h, h.Port, try[0], keys[u], try[1])) {
					mu.Lock()
					cut = append(cut, fmt.Sprintf("the fault does not cut the main path: %s by %s's key gets root through port 22", try[0], u))
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if len(cut) > 0 {
		slices.Sort(cut)
		return "", cut
	}
	got, err := plainSSH(ctx, knownHosts, h, 2222, "root", keys["bg-ops1"], "id -un")
	if fault.reboot && h.Kind.Systemd() && !isRoot(got, err) {
		// Restart=always, RestartSec=5s, and the boot may still be going on.
		deadline := time.Now().Add(20 * time.Second)
		for !isRoot(got, err) && time.Now().Before(deadline) {
			time.Sleep(500 * time.Millisecond)
			got, err = plainSSH(ctx, knownHosts, h, 2222, "root", keys["bg-ops1"], "id -un")
		}
	}
	rootOK := isRoot(got, err)
	got2, err2 := plainSSH(ctx, knownHosts, h, 2222, "bg-ops2", keys["bg-ops2"], "sudo -n id -un")
	sudoOK := isRoot(got2, err2)
	if rootOK != fault.survives {
		errs = append(errs, fmt.Sprintf("root through port 2222: %v (%v: %q), want %v", rootOK, err, got, fault.survives))
	}
	if fault.survives && sudoOK != fault.sudo {
		errs = append(errs, fmt.Sprintf("bg-ops2 + sudo through port 2222: %v (%v: %q), want %v", sudoOK, err2, got2, fault.sudo))
	}
	return fmt.Sprintf("%s: root via 2222 %v, bg-ops2+sudo via 2222 %v", fault.name, rootOK, sudoOK), errs
}

// Audit knows the second path: nothing on a healthy host; then, with the
// emergency sshd stopped, its store edited by hand, its config sharing the
// main path's host key and PAM, and [addr]:2222 gone from known_hosts, one
// finding of each stable id, with the fix. apply --check --diff shows the
// store and config changes, and apply repairs all of it.
func TestSecondPathAuditOnLab(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	t.Parallel()
	f := newFleet(t, 1, "", nil)
	h := f.lab.Hosts[0]
	dir := exampleDir(t)
	pb := filepath.Join(dir, "playbook.yml")
	if code, _, _ := runCLI(t, f.args("apply", pb)...); code != 0 {
		t.Fatalf("apply: exit %d", code)
	}
	// A second apply changes nothing.
	if code, out, _ := runCLI(t, f.args("apply", pb)...); code != 0 || !strings.Contains(out, h.Name+" : ok=") || !strings.Contains(out, " changed=0 ") {
		t.Errorf("second apply: exit %d, want nothing changed:\n%s", code, out)
	}
	code, out, _ := runCLI(t, f.args("audit", pb, "--format", "json")...)
	if code != 0 {
		t.Fatalf("audit of a healthy host: exit %d", code)
	}
	for _, fd := range decodeReport(t, out).Hosts[0].Findings {
		// The lab's PID 1 is a shell, no sysvinit: that the init script
		// may never run at boot is all audit may say (info).
		if fd.ID == "second-path-no-boot" && fd.Severity == "info" && strings.Contains(fd.Detail, "PID 1 is bash, not sysvinit's init") {
			continue
		}
		if strings.HasPrefix(fd.ID, "second-path") {
			t.Errorf("finding on a healthy second path: %+v", fd)
		}
	}

	if _, err := h.Exec(context.Background(), `kill "$(cat /run/sshd-breakglass.pid)"
echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGLjvK0Yk3M0GbhT9eS2j3oWnZVe7yJ4hTQ9O9Wn4tHn intruder' >> /etc/breakglass/keys/bg-ops1
sed -i 's|^UsePAM no|UsePAM yes|; s|^HostKey /etc/breakglass/hostkeys/|HostKey /etc/ssh/|' /etc/ssh/sshd_config_breakglass
echo '# edited by hand' >> /etc/init.d/breakglass-sshd`, nil); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ssh-keygen", "-R", "["+h.Addr+"]:2222", "-f", f.knownHosts).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -R: %v: %s", err, out)
	}
	code, out, _ = runCLI(t, f.args("audit", pb, "--format", "json")...)
	if code != 2 {
		t.Errorf("audit of a broken second path: exit %d, want 2", code)
	}
	got := map[string]string{}
	for _, fd := range decodeReport(t, out).Hosts[0].Findings {
		if strings.HasPrefix(fd.ID, "second-path") {
			got[fd.ID] += fd.Detail + " | fix: " + fd.Fix + "\n"
		}
	}
	for id, want := range map[string]string{
		"second-path-not-running": "sshd -f /etc/ssh/sshd_config_breakglass",
		"second-path-shared":      "UsePAM yes",
		"second-path-keys-differ": "/etc/breakglass/keys/bg-ops1",
		"second-path-no-boot":     "/etc/init.d/breakglass-sshd is missing or differs",
	} {
		if !strings.Contains(got[id], want) {
			t.Errorf("finding %s: %q, want %q in it", id, got[id], want)
		}
	}
	if !strings.Contains(got["second-path-shared"], "/etc/ssh/ssh_host_ed25519_key") {
		t.Errorf("second-path-shared does not name the main host key: %q", got["second-path-shared"])
	}
	// Running again (nothing else fixed): now known_hosts is checked.
	if _, err := h.Exec(context.Background(), "/usr/sbin/sshd -f /etc/ssh/sshd_config_breakglass", nil); err != nil {
		t.Fatal(err)
	}
	_, out, _ = runCLI(t, f.args("audit", pb, "--format", "json")...)
	found := false
	for _, fd := range decodeReport(t, out).Hosts[0].Findings {
		found = found || fd.ID == "second-path-known-hosts" && strings.Contains(fd.Detail, "["+h.Addr+"]:2222")
	}
	if !found {
		t.Errorf("no second-path-known-hosts finding:\n%s", out)
	}

	code, out, _ = runCLI(t, f.args("apply", pb, "--check", "--diff")...)
	for _, want := range []string{"-ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGLjvK0Yk3M0GbhT9eS2j3oWnZVe7yJ4hTQ9O9Wn4tHn intruder", "-UsePAM yes", "+UsePAM no", "record [" + h.Addr + "]:2222",
		"update /etc/init.d/breakglass-sshd", "-# edited by hand"} {
		if !strings.Contains(out, want) {
			t.Errorf("apply --check --diff (exit %d) does not show %q", code, want)
		}
	}
	if code, _, _ := runCLI(t, f.args("apply", pb)...); code != 0 {
		t.Errorf("apply repairing the second path: exit %d", code)
	}
	if code, _, _ := runCLI(t, f.args("audit", pb)...); code != 0 {
		t.Errorf("audit after the repair: exit %d", code)
	}
	if got, err := plainSSH(context.Background(), f.knownHosts, h, 2222, "root", filepath.Join(dir, "keys", "bg-ops1"), "id -un"); !isRoot(got, err) {
		t.Errorf("root through port 2222 after the repair: %v: %q", err, got)
	}
}

// The emergency port equal to the host's main port, or an allowed user
// the play gives no key, is an input error at its position, and no host
// is contacted (192.0.2.0/24 answers nobody).
func TestSecondPathInputErrors(t *testing.T) {
	dir := t.TempDir()
	inv := write(t, dir, "inv.ini", "[web]\nweb01 ansible_host=192.0.2.1\nweb02 ansible_host=192.0.2.2 ansible_port=2200\n")
	key := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGLjvK0Yk3M0GbhT9eS2j3oWnZVe7yJ4hTQ9O9Wn4tHn ops1@safe"
	pb := write(t, dir, "pb.yml", `- hosts: all
  tasks:
    - authorized_key: {user: bg-ops1, key: "`+key+`"}
    - secondary_sshd: {port: 22, allow_users: [bg-ops1, bg-ghost]}
    - secondary_sshd: {port: 2200, allow_users: [bg-ops1], name: second}
`)
	start := time.Now()
	code, _, stderr := runCLI(t, "apply", "-i", inv, "--timeout", "30s", pb)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{
		pb + ":4:30: secondary_sshd: port 22 is the host's main SSH port",
		pb + ":4:57: secondary_sshd: allow_users: bg-ghost gets no key from the play's authorized_key tasks",
		pb + ":5:30: secondary_sshd: port 2200 is the host's main SSH port",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("took %s: a host was contacted", time.Since(start))
	}
}
