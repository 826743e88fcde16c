package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/breakglass/breakglass/internal/report"
)

// aliasBomb is a billion-laughs playbook: nine levels of nine aliases, a
// few hundred bytes that expand to 9^9 strings.
func aliasBomb() string {
	var b strings.Builder
	b.WriteString("- hosts: labhosts\n  vars:\n    l0: &l0 [x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, "    l%d: &l%d [", i, i)
		for j := 0; j < 9; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*l%d", i-1)
		}
		b.WriteString("]\n")
	}
	b.WriteString("  tasks:\n    - command: {cmd: \"echo {{ l9 }}\"}\n")
	return b.String()
}

// TestHostileInputOnLab feeds breakglass input meant to break it or to
// inject shell on a host. Each must be refused as bad input (exit 1) with a
// message naming the problem, before any host is contacted.
func TestHostileInputOnLab(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	t.Parallel()
	f := newFleet(t, 1, "", nil)
	h := f.lab.Hosts[0]
	const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ0Z8j0b3yQ0rQ0W0m4cGq9wJ3zVwYkq7sZ2cH1xXyA"
	play := func(tasks string) string {
		return "- hosts: labhosts\n  become: true\n  tasks:\n" + tasks
	}
	huge := "# " + strings.Repeat("x", 20<<20) + "\n" + play("    - command: {cmd: \"true\"}\n")
	cases := []struct {
		name      string
		playbook  string
		inventory string // INI (or YAML, JSON: see invName); the fleet's inventory when empty
		want      []string
		invName   string // inventory file name; "inv.ini" when empty, executable when it ends in .sh
	}{
		{"YAML alias bomb", aliasBomb(), "", []string{"pb.yml:", "alias"}, ""},
		{"invalid UTF-8", play("    - command: {cmd: \"echo \xff\xfe\"}\n"), "", []string{"UTF-8"}, ""},
		{"NUL byte", play("    - command: {cmd: \"echo a\x00b\"}\n"), "", []string{"pb.yml"}, ""},
		{"duplicate keys", "- hosts: labhosts\n  hosts: all\n  tasks: []\n", "", []string{"pb.yml:2:3:", "hosts"}, ""},
		{"duplicate module args", play("    - user: {name: bg-a, name: bg-b}\n"), "", []string{"pb.yml:4:", "name"}, ""},
		{"user name with a semicolon", play("    - user: {name: \"a;id\"}\n"), "", []string{"pb.yml:4:", `invalid user name "a;id"`}, ""},
		{"user name with command substitution", play("    - user: {name: \"$(id)\"}\n"), "", []string{"pb.yml:4:", `invalid user name "$(id)"`}, ""},
		{"key with an embedded newline", play("    - authorized_key: {user: admin, key: \"" + key + " x\\nssh-rsa AAAAB3NzaC1yc2E y\"}\n"), "", []string{"pb.yml:4:"}, ""},
		{"key with injected options after a newline", play("    - authorized_key: {user: admin, key: \"" + key + " x\\ncommand=\\\"id\\\" " + key + " y\"}\n"), "", []string{"pb.yml:4:"}, ""},
		{"options with a newline", play("    - authorized_key: {user: admin, key: \"" + key + "\", options: \"no-pty\\nssh-rsa AAAAB3NzaC1yc2E z\"}\n"), "", []string{"pb.yml:4:"}, ""},
		{"path with a control character", play("    - command: {cmd: \"true\", creates: \"/tmp/a\\nb\"}\n"), "", []string{"pb.yml:4:", "control character"}, ""},
		{"relative path", play("    - command: {cmd: \"true\", creates: \"it's a \\\"file\\\"\"}\n"), "", []string{"pb.yml:4:", "absolute"}, ""},
		{"huge playbook", huge, "", []string{"larger than 16 MiB"}, ""},
		{"INI host name with shell", play("    - command: {cmd: \"true\"}\n"), "[labhosts]\nweb;rm -rf / ansible_host=" + h.Addr + "\n", []string{"web;rm"}, ""},
		{"deeply nested playbook", "- hosts: labhosts\n  vars:\n    v: " + strings.Repeat("[", 200000) + strings.Repeat("]", 200000) + "\n  tasks: []\n", "", []string{"pb.yml:3:", "max depth"}, ""},
		{"key with CR LF", "- hosts: labhosts\n  \"ta\\r\\nsks\": []\n", "", []string{`pb.yml:2:3: unknown play key "ta\r\nsks"`}, ""},
		{"key with NUL", "- hosts: labhosts\n  \"tasks\\0\": []\n", "", []string{`pb.yml:2:3: unknown play key "tasks\x00"`}, ""},
		{"YAML inventory with duplicate keys", play("    - command: {cmd: \"true\"}\n"), "all:\n  children:\n    labhosts:\n      hosts:\n        lab1: {ansible_host: " + h.Addr + ", ansible_host: 10.0.0.1}\n", []string{"inv.yml:5:", "ansible_host"}, "inv.yml"},
		{"YAML inventory host name with shell", play("    - command: {cmd: \"true\"}\n"), "all:\n  children:\n    labhosts:\n      hosts:\n        \"$(touch /rm-marker)\": {ansible_host: " + h.Addr + "}\n", []string{"inv.yml:5:", "touch"}, "inv.yml"},
		{"YAML inventory nested too deep", play("    - command: {cmd: \"true\"}\n"), "all:\n  vars:\n    v: " + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + "\n", []string{"inv.yml:3:", "nesting deeper than 1000"}, "inv.yml"},
		{"dynamic inventory host name with shell", play("    - command: {cmd: \"true\"}\n"), "#!/bin/sh\necho '{\"labhosts\": {\"hosts\": [\"web;rm -rf /\"]}, \"_meta\": {\"hostvars\": {\"web;rm -rf /\": {\"ansible_host\": \"" + h.Addr + "\"}}}}'\n", []string{"web;rm"}, "inv.sh"},
		{"dynamic inventory nested too deep", play("    - command: {cmd: \"true\"}\n"), "#!/bin/sh\nprintf '{\"all\": {\"vars\": {\"v\": " + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + "}}}'\n", []string{"inv.sh --list:1:", "nesting deeper than 1000"}, "inv.sh"},
		{"dynamic inventory printing invalid UTF-8", play("    - command: {cmd: \"true\"}\n"), "#!/bin/sh\nprintf '{\"labhosts\": {\"hosts\": [\"web\\377\"]}}'\n", []string{"inv.sh --list:1:", "invalid UTF-8"}, "inv.sh"},
	}
	before := logins(t, h)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			pb := write(t, dir, "pb.yml", c.playbook)
			inv := f.inventory
			if c.inventory != "" {
				name := c.invName
				if name == "" {
					name = "inv.ini"
				}
				inv = write(t, dir, name, c.inventory)
				if strings.HasSuffix(name, ".sh") {
					if err := os.Chmod(inv, 0o755); err != nil {
						t.Fatal(err)
					}
				}
			}
			code, out, stderr := runCLI(t, "apply", "-i", inv, "--known-hosts", f.knownHosts, "--timeout", "60s", pb)
			if code != report.ExitUsage {
				t.Errorf("exit %d, want 1", code)
			}
			if out != "" {
				t.Errorf("bad input wrote a report: %q", out)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q", w)
				}
			}
			for _, line := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
				if !strings.HasPrefix(line, "breakglass: ") || strings.Contains(line, "error occurred") {
					t.Errorf("stderr line %q is not one breakglass: diagnostic", line)
				}
			}
			if len(stderr) > 4096 {
				t.Errorf("stderr is %d bytes: the error must be short, not echo the input", len(stderr))
			}
		})
	}
	if n := logins(t, h); n != before {
		t.Errorf("hostile input reached the host: %d logins, want %d", n, before)
	}
	if _, err := h.Exec(context.Background(), "test ! -e /rm-marker && id -u web >/dev/null 2>&1; test $? -ne 0", nil); err != nil {
		t.Errorf("something ran on the host: %v", err)
	}

	t.Run("a path with spaces and quotes is quoted, not run", func(t *testing.T) {
		p := `/tmp/it's a "file" $(touch /root/pwned) ` + "`touch /root/pwned2`"
		pb := write(t, t.TempDir(), "pb.yml", play(fmt.Sprintf("    - command: {cmd: \"true\", creates: %q}\n", p)))
		code, _, _ := runCLI(t, f.args("apply", pb)...)
		if code != 0 {
			t.Fatalf("exit %d, want 0", code)
		}
		if _, err := h.Exec(context.Background(), "test ! -e /root/pwned && test ! -e /root/pwned2", nil); err != nil {
			t.Error("the path was run as shell on the host")
		}
	})
}
