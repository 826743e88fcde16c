package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/breakglass/breakglass/internal/lab"
	"github.com/breakglass/breakglass/internal/report"
)

// runCLI runs breakglass in-process and returns exit code, stdout, stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, &out, &errb)
	t.Logf("breakglass %s -> %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out.String(), errb.String())
	return code, out.String(), errb.String()
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	pb := write(t, dir, "pb.yml", "- hosts: all\n  tasks: []\n")
	inv := write(t, dir, "inv.ini", "[web]\nweb01 ansible_host=192.0.2.1\n")
	cases := []struct {
		args []string
		want string
	}{
		{nil, "usage"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"apply", pb}, "-i INVENTORY is required"},
		{[]string{"apply", "-i", inv}, "want exactly one playbook"},
		{[]string{"apply", "-i", inv, pb, "--format", "yaml"}, `--format "yaml"`},
		{[]string{"apply", "-i", inv, pb, "--limit", "db"}, `--limit "db" matches no host`},
		{[]string{"apply", "-i", inv, pb, "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"verify", "-i", inv, pb}, "no verify_access task"},
		{[]string{"recover", "-i", inv, pb}, "recover needs --user"},
	}
	for _, c := range cases {
		code, _, stderr := runCLI(t, c.args...)
		if code != report.ExitUsage {
			t.Errorf("%v: exit %d, want 1", c.args, code)
		}
		if !strings.Contains(stderr, c.want) {
			t.Errorf("%v: stderr %q lacks %q", c.args, stderr, c.want)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "version")
	if code != 0 || !strings.HasPrefix(out, "breakglass ") {
		t.Fatalf("version: %d %q", code, out)
	}
}

// fleet is a lab plus an Ansible YAML inventory and a known_hosts file
// written the way an operator would: the inventory by hand, known_hosts by
// OpenSSH's own ssh-keyscan, hashed.
type fleet struct {
	lab        *lab.Lab
	dir        string
	inventory  string
	knownHosts string
}

func newFleet(t *testing.T, n int, extraHosts string, scan func(h *lab.Host) bool) *fleet {
	t.Helper()
	return newFleetKind(t, lab.Namespace, n, extraHosts, scan)
}

// newFleetKind is newFleet with hosts of kind k (skipped loudly, or failed
// under CI=true, where this machine cannot run them).
func newFleetKind(t *testing.T, k lab.Kind, n int, extraHosts string, scan func(h *lab.Host) bool) *fleet {
	t.Helper()
	l := lab.NewKind(t, k, n)
	f := &fleet{lab: l, dir: t.TempDir()}
	var inv strings.Builder
	inv.WriteString("all:\n  vars:\n    ansible_user: admin\n    ansible_ssh_private_key_file: " + l.AdminKey + "\n  children:\n    labhosts:\n      hosts:\n")
	var known bytes.Buffer
	for _, h := range l.Hosts {
		fmt.Fprintf(&inv, "        %s:\n          ansible_host: %s\n", h.Name, h.Addr)
		if scan != nil && !scan(h) {
			continue
		}
		out, err := exec.Command("ssh-keyscan", "-H", "-t", "ed25519", h.Addr).Output()
		if err != nil || len(out) == 0 {
			t.Fatalf("ssh-keyscan %s: %v", h.Addr, err)
		}
		known.Write(out)
	}
	inv.WriteString(extraHosts)
	f.inventory = write(t, f.dir, "inventory.yml", inv.String())
	f.knownHosts = write(t, f.dir, "known_hosts", known.String())
	return f
}

func (f *fleet) args(cmd string, more ...string) []string {
	return append([]string{cmd, "-i", f.inventory, "--known-hosts", f.knownHosts, "--timeout", "60s"}, more...)
}

// logins counts the publickey logins sshd accepted on h.
func logins(t *testing.T, h *lab.Host) int {
	t.Helper()
	out, err := h.Exec(context.Background(), "grep -c 'Accepted publickey' /var/log/auth.log || true", nil)
	if err != nil {
		t.Fatalf("%s: read auth.log: %v", h.Name, err)
	}
	var n int
	fmt.Sscanf(strings.TrimSpace(string(out)), "%d", &n)
	return n
}

func decodeReport(t *testing.T, s string) *report.Report {
	t.Helper()
	var r report.Report
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, s)
	}
	return &r
}

func TestApplyFoundationOnLab(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	t.Parallel()
	// The third host is missing from known_hosts; "down" is an address
	// where nothing listens.
	f := newFleet(t, 3, "    elsewhere:\n      hosts:\n        down:\n          ansible_host: 127.0.0.1\n          ansible_port: 1\n",
		func(h *lab.Host) bool { return !strings.HasSuffix(h.Name, "03") })
	hosts := f.lab.Hosts
	empty := write(t, f.dir, "empty.yml", "- name: nothing to do\n  hosts: labhosts\n  become: true\n  tasks: []\n")

	t.Run("empty playbook on reachable hosts exits 0", func(t *testing.T) {
		code, out, _ := runCLI(t, f.args("apply", empty, "--limit", hosts[0].Name+":"+hosts[1].Name, "--format", "json")...)
		if code != 0 {
			t.Fatalf("exit %d, want 0", code)
		}
		r := decodeReport(t, out)
		if len(r.Hosts) != 2 || r.Hosts[0].Status != "ok" || r.Hosts[1].Status != "ok" {
			t.Fatalf("hosts: %+v", r.Hosts)
		}
		if logins(t, hosts[2]) != 0 {
			t.Fatalf("%s outside --limit was logged into", hosts[2].Name)
		}
	})

	t.Run("unknown host key and a host down: exit 4 for those only", func(t *testing.T) {
		before := logins(t, hosts[2])
		all := write(t, f.dir, "all.yml", "- hosts: all\n  become: true\n  tasks:\n    - command: {cmd: \"touch /root/ran\"}\n")
		code, out, _ := runCLI(t, f.args("apply", all, "--format", "json")...)
		if code != report.ExitUnreachable {
			t.Fatalf("exit %d, want 4", code)
		}
		r := decodeReport(t, out)
		status := map[string]string{}
		for _, h := range r.Hosts {
			status[h.Name] = h.Status
		}
		want := map[string]string{hosts[0].Name: "changed", hosts[1].Name: "changed", hosts[2].Name: "unreachable", "down": "unreachable"}
		for name, st := range want {
			if status[name] != st {
				t.Errorf("%s: status %q, want %q", name, status[name], st)
			}
		}
		if logins(t, hosts[2]) != before {
			t.Errorf("%s has an unknown host key, yet something logged in", hosts[2].Name)
		}
		if _, err := hosts[2].Exec(context.Background(), "test ! -e /root/ran", nil); err != nil {
			t.Errorf("%s: the task ran on a host whose key is unknown", hosts[2].Name)
		}
		for _, h := range hosts[:2] {
			if _, err := h.Exec(context.Background(), "test -e /root/ran", nil); err != nil {
				t.Errorf("%s: the task did not run as root: %v", h.Name, err)
			}
		}
		for _, h := range r.Hosts {
			if h.Name == hosts[2].Name && !strings.Contains(h.Error, "known_hosts") {
				t.Errorf("unknown-key error should name known_hosts: %q", h.Error)
			}
		}
	})

	t.Run("accept-new records the unknown host and then reaches it", func(t *testing.T) {
		kh := write(t, f.dir, "kh2", "")
		data, _ := os.ReadFile(f.knownHosts)
		if err := os.WriteFile(kh, data, 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, _ := runCLI(t, "apply", "-i", f.inventory, "--known-hosts", kh, "--accept-new", "--limit", "labhosts", empty)
		if code != 0 {
			t.Fatalf("exit %d, want 0", code)
		}
		after, _ := os.ReadFile(kh)
		if len(after) <= len(data) {
			t.Fatal("known_hosts did not grow")
		}
	})

	t.Run("broken YAML: exit 1 with file:line:column, no host contacted", func(t *testing.T) {
		before := logins(t, hosts[0])
		bad := write(t, f.dir, "bad.yml", "- hosts: all\n  tasks:\n    - user: {name: bg-ops1, shel: /bin/bash}\n    - nosuchmodule: {}\n")
		code, _, stderr := runCLI(t, f.args("apply", bad)...)
		if code != report.ExitUsage {
			t.Fatalf("exit %d, want 1", code)
		}
		for _, want := range []string{bad + ":3:", `unknown key "shel"`, bad + ":4:7:", `unknown module "nosuchmodule"`} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q", want)
			}
		}
		if logins(t, hosts[0]) != before {
			t.Error("a host was contacted despite bad input")
		}
	})
}
