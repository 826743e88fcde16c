package cli

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/breakglass/breakglass/internal/lab"
	"github.com/breakglass/breakglass/internal/report"
)

// exampleDir copies examples/playbook.yml into a temporary directory with
// fresh keys for its users, as an operator would set it up.
func exampleDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join("..", "..", "examples", "playbook.yml"))
	if err != nil {
		t.Fatal(err)
	}
	write(t, dir, "playbook.yml", string(src))
	if err := os.Mkdir(filepath.Join(dir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"bg-ops1", "bg-ops2"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", u, "-f", filepath.Join(dir, "keys", u)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
	}
	return dir
}

// sshAs logs in with the plain OpenSSH client and runs cmd.
func sshAs(f *fleet, h *lab.Host, user, key, cmd string) (string, error) {
	out, err := exec.Command("ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile="+f.knownHosts, "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10",
		"-i", key, user+"@"+h.Addr, cmd).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func stateOf(t *testing.T, h *lab.Host) string {
	t.Helper()
	out, err := h.Exec(context.Background(), "stat -c '%n %U:%G %a' /home/admin /home/admin/.ssh /home/admin/.ssh/authorized_keys; md5sum /home/admin/.ssh/authorized_keys /etc/passwd /etc/shadow; ls /etc/sudoers.d", nil)
	if err != nil {
		t.Fatalf("%s: %v", h.Name, err)
	}
	return string(out)
}

func TestExamplePlaybookOnLab(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	t.Parallel()
	f := newFleet(t, 3, "", nil)
	dir := exampleDir(t)
	pb := filepath.Join(dir, "playbook.yml")

	code, out, _ := runCLI(t, f.args("apply", pb, "--format", "json")...)
	if code != 0 {
		t.Fatalf("first apply: exit %d", code)
	}
	r := decodeReport(t, out)
	for _, h := range r.Hosts {
		if h.Status != report.StatusChanged || len(h.Access) != 4 {
			t.Errorf("%s: status %s, %d logins", h.Name, h.Status, len(h.Access))
		}
	}
	for _, h := range f.lab.Hosts {
		for _, u := range []string{"bg-ops1", "bg-ops2"} {
			got, err := sshAs(f, h, u, filepath.Join(dir, "keys", u), "id -un; sudo -n true && echo sudo-ok")
			if err != nil || got != u+"\nsudo-ok" {
				t.Errorf("%s: plain ssh as %s: %v: %q", h.Name, u, err, got)
			}
		}
	}

	code, out, _ = runCLI(t, f.args("apply", pb, "--format", "json")...)
	if code != 0 {
		t.Fatalf("second apply: exit %d", code)
	}
	r = decodeReport(t, out)
	if r.Summary.Changes != 0 || r.Summary.OK != 3 {
		t.Errorf("second apply changed things: %+v", r.Summary)
	}

	t.Run("the original incident", func(t *testing.T) {
		h := f.lab.Hosts[0]
		if _, err := h.Exec(context.Background(), "chmod 777 /home/admin; chmod o+w /home/admin/.ssh; chown bg-ops2 /home/admin/.ssh/authorized_keys", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := sshAs(f, h, "admin", f.lab.AdminKey, "true"); err == nil {
			t.Fatal("sshd still lets admin in: the lab does not reproduce the incident")
		}
		// Reach the host as a break-glass user, as an operator would.
		inv := write(t, t.TempDir(), "bg.yml", "all:\n  hosts:\n    "+h.Name+":\n      ansible_host: "+h.Addr+"\n      ansible_user: bg-ops1\n      ansible_ssh_private_key_file: "+filepath.Join(dir, "keys", "bg-ops1")+"\n")
		args := []string{"apply", "-i", inv, "--known-hosts", f.knownHosts, pb, "--format", "json"}
		before := stateOf(t, h)
		code, out, _ := runCLI(t, append(args, "--check")...)
		if code != 0 {
			t.Fatalf("check: exit %d", code)
		}
		if after := stateOf(t, h); after != before {
			t.Fatalf("--check changed the host:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		var whats []string
		for _, task := range decodeReport(t, out).Hosts[0].Tasks {
			for _, c := range task.Changes {
				whats = append(whats, c.What)
			}
		}
		all := strings.Join(whats, "\n")
		for _, want := range []string{"/home/admin", "/home/admin/.ssh", "/home/admin/.ssh/authorized_keys"} {
			if !strings.Contains(all, want+" ") && !strings.Contains(all, want+"\n") && !strings.HasSuffix(all, want) {
				t.Errorf("check mode does not report a repair of %s:\n%s", want, all)
			}
		}
		if code, _, _ := runCLI(t, args...); code != 0 {
			t.Fatalf("repair: exit %d", code)
		}
		if got, err := sshAs(f, h, "admin", f.lab.AdminKey, "id -un"); err != nil || got != "admin" {
			t.Fatalf("admin still locked out after the repair: %v %q", err, got)
		}
	})
}
