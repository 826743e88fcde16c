package transport

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func writeSSHConfig(t *testing.T, text string) *SSHConfig {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadSSHConfig(p)
	if err != nil {
		t.Fatalf("LoadSSHConfig: %v", err)
	}
	return cfg
}

func TestResolve(t *testing.T) {
	t.Setenv("USER", "alice")
	t.Setenv("HOME", "/home/alice")
	cfg := writeSSHConfig(t, `
Host bastion
  HostName 10.9.9.9
  User jumper
  Port 2200
  IdentityFile ~/.ssh/bastion_key

Host web1 10.0.0.1
  HostName web1.internal.example
  User deploy
  Port 2222
  IdentityFile ~/.ssh/%r@%h
  IdentityFile %d/.ssh/second

Host db*
  User dba
  ProxyJump bastion

Host *.prod !skip.prod
  ProxyJump ops@gw.prod:2022,bastion
  IdentitiesOnly yes

Host pinned
  ProxyJump none

Host *
  User wildcard-user
`)
	tests := []struct {
		name string
		host string
		vars map[string]any
		want Target
	}{{
		name: "ssh config fills everything",
		host: "web1",
		want: Target{Name: "web1", Host: "web1.internal.example", Port: 2222, User: "deploy",
			IdentityFiles: []string{"/home/alice/.ssh/deploy@web1.internal.example", "/home/alice/.ssh/second"}},
	}, {
		name: "inventory vars win over ssh config",
		host: "web1",
		vars: map[string]any{"ansible_port": 22, "ansible_user": "root", "ansible_ssh_private_key_file": "~/keys/root"},
		want: Target{Name: "web1", Host: "web1.internal.example", Port: 22, User: "root",
			IdentityFiles: []string{"/home/alice/keys/root"}},
	}, {
		name: "ansible_host is the ssh_config alias, as when Ansible runs ssh",
		host: "frontend",
		vars: map[string]any{"ansible_host": "10.0.0.1", "ansible_port": "2200"},
		want: Target{Name: "frontend", Host: "web1.internal.example", Port: 2200, User: "deploy",
			IdentityFiles: []string{"/home/alice/.ssh/deploy@web1.internal.example", "/home/alice/.ssh/second"}},
	}, {
		name: "no config block: defaults, local user",
		host: "plain",
		vars: map[string]any{"ansible_host": "192.0.2.7", "ansible_port": float64(2022)},
		want: Target{Name: "plain", Host: "192.0.2.7", Port: 2022, User: "wildcard-user"},
	}, {
		name: "ProxyJump from a wildcard block, hop resolved through the config",
		host: "db7",
		want: Target{Name: "db7", Host: "db7", Port: 22, User: "dba", Jumps: []Target{
			{Name: "bastion", Host: "10.9.9.9", Port: 2200, User: "jumper", IdentityFiles: []string{"/home/alice/.ssh/bastion_key"}},
		}},
	}, {
		name: "negated pattern and a jump chain",
		host: "api.prod",
		want: Target{Name: "api.prod", Host: "api.prod", Port: 22, User: "wildcard-user", IdentitiesOnly: true, Jumps: []Target{
			{Name: "gw.prod", Host: "gw.prod", Port: 2022, User: "ops", IdentitiesOnly: true},
			{Name: "bastion", Host: "10.9.9.9", Port: 2200, User: "jumper", IdentityFiles: []string{"/home/alice/.ssh/bastion_key"}},
		}},
	}, {
		name: "negated host gets no jump",
		host: "skip.prod",
		want: Target{Name: "skip.prod", Host: "skip.prod", Port: 22, User: "wildcard-user"},
	}, {
		name: "common args: -J, -p, -l, -i, quoted values; StrictHostKeyChecking ignored",
		host: "db1",
		vars: map[string]any{
			"ansible_ssh_common_args": `-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -J 'me@jump.example:2201' -p2323 -l "ops" -i "/keys/with space"`,
		},
		want: Target{Name: "db1", Host: "db1", Port: 2323, User: "ops", IdentityFiles: []string{"/keys/with space"},
			Jumps: []Target{{Name: "jump.example", Host: "jump.example", Port: 2201, User: "me"}}},
	}, {
		name: "common args -o forms; extra args come after common args; first value wins",
		host: "db2",
		vars: map[string]any{
			"ansible_ssh_common_args": `-o ProxyJump=bastion -o "Port 2424" -oUser=first -o IdentityFile=/k/one`,
			"ansible_ssh_extra_args":  `-o Port=9999 -o User=second -o IdentityFile=/k/two -qC4`,
		},
		want: Target{Name: "db2", Host: "db2", Port: 2424, User: "first", IdentityFiles: []string{"/k/one", "/k/two"},
			Jumps: []Target{{Name: "bastion", Host: "10.9.9.9", Port: 2200, User: "jumper", IdentityFiles: []string{"/home/alice/.ssh/bastion_key"}}}},
	}, {
		name: "ansible_port beats -p, args beat config",
		host: "web1",
		vars: map[string]any{"ansible_port": "2525", "ansible_ssh_common_args": "-p 1111 -o User=argsuser -o ProxyJump=none"},
		want: Target{Name: "web1", Host: "web1.internal.example", Port: 2525, User: "argsuser",
			IdentityFiles: []string{"/home/alice/.ssh/argsuser@web1.internal.example", "/home/alice/.ssh/second"}},
	}, {
		name: "ProxyJump none in config",
		host: "pinned",
		want: Target{Name: "pinned", Host: "pinned", Port: 22, User: "wildcard-user"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(tt.host, tt.vars, cfg)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Resolve(%q)\n got  %+v\n want %+v", tt.host, got, tt.want)
			}
		})
	}
}

func TestResolveWithoutConfig(t *testing.T) {
	t.Setenv("USER", "alice")
	for _, cfg := range []*SSHConfig{nil, mustLoad(t, filepath.Join(t.TempDir(), "missing"))} {
		got, err := Resolve("web", map[string]any{"ansible_host": "Web.Example.COM"}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		want := Target{Name: "web", Host: "web.example.com", Port: 22, User: "alice"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %+v, want %+v", got, want)
		}
	}
}

func mustLoad(t *testing.T, path string) *SSHConfig {
	cfg, err := LoadSSHConfig(path)
	if err != nil {
		t.Fatalf("missing file must be an empty config: %v", err)
	}
	return cfg
}

func TestResolveErrors(t *testing.T) {
	cfg := writeSSHConfig(t, "Host legacy\n  ProxyCommand ssh -W %h:%p gw\n")
	for name, tc := range map[string]struct {
		host string
		vars map[string]any
		want string
	}{
		"bad port":                {"h", map[string]any{"ansible_port": "ssh"}, `invalid port "ssh"`},
		"port out of range":       {"h", map[string]any{"ansible_port": 70000}, "invalid port"},
		"unterminated quote":      {"h", map[string]any{"ansible_ssh_common_args": `-o "ProxyJump=x`}, "unterminated double quote"},
		"missing value":           {"h", map[string]any{"ansible_ssh_extra_args": `-J`}, "option -J needs a value"},
		"ProxyCommand in args":    {"h", map[string]any{"ansible_ssh_common_args": `-o ProxyCommand="ssh -W %h:%p gw"`}, "ProxyCommand is not supported"},
		"ProxyCommand in config":  {"legacy", nil, "ProxyCommand is not supported"},
		"option-looking hostname": {"h", map[string]any{"ansible_host": "-oProxyCommand=x"}, "invalid host address"},
		"space in host":           {"h", map[string]any{"ansible_host": "a b"}, "invalid host address"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Resolve(tc.host, tc.vars, cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "host "+tc.host+": ") {
				t.Errorf("error %q does not name the host", err)
			}
		})
	}
}

func TestLoadSSHConfigUnsupportedMatch(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config")
	os.WriteFile(p, []byte("Match exec \"true\"\n  User x\n"), 0o600)
	if _, err := LoadSSHConfig(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("want an error naming %s, got %v", p, err)
	}
}

func TestParseJump(t *testing.T) {
	t.Setenv("USER", "alice")
	cfg := writeSSHConfig(t, "Host b\n  HostName 10.1.1.1\n  User bob\n  Port 2200\n")
	tests := map[string][]Target{
		"":     nil,
		"none": nil,
		"u@h1:2201,b": {
			{Name: "h1", Host: "h1", Port: 2201, User: "u"},
			{Name: "b", Host: "10.1.1.1", Port: 2200, User: "bob"},
		},
		"ssh://root@b:22":   {{Name: "b", Host: "10.1.1.1", Port: 22, User: "root"}},
		"[::1]:2222":        {{Name: "::1", Host: "::1", Port: 2222, User: "alice"}},
		"[fe80::1]":         {{Name: "fe80::1", Host: "fe80::1", Port: 22, User: "alice"}},
		"me@corp.example@h": {{Name: "h", Host: "h", Port: 22, User: "me@corp.example"}},
	}
	for spec, want := range tests {
		got, err := ParseJump(spec, cfg)
		if err != nil {
			t.Errorf("ParseJump(%q): %v", spec, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("ParseJump(%q)\n got  %+v\n want %+v", spec, got, want)
		}
	}
	for _, bad := range []string{"h:0", "h:port", "@", "u@:22"} {
		if _, err := ParseJump(bad, nil); err == nil {
			t.Errorf("ParseJump(%q): want an error", bad)
		}
	}
}

func TestSplitWords(t *testing.T) {
	tests := map[string][]string{
		``:                       nil,
		`  a  b `:                {"a", "b"},
		`-o 'A B' "C \"D\" \$E"`: {"-o", "A B", `C "D" $E`},
		`a\ b c'd'"e"`:           {"a b", "cde"},
		`''`:                     {""},
		`-o "ProxyCommand=ssh -W %h:%p -q user@bastion"`: {"-o", "ProxyCommand=ssh -W %h:%p -q user@bastion"},
	}
	for in, want := range tests {
		got, err := splitWords(in)
		if err != nil {
			t.Errorf("splitWords(%q): %v", in, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("splitWords(%q) = %q, want %q", in, got, want)
		}
	}
	for _, bad := range []string{`'a`, `"a`} {
		if _, err := splitWords(bad); err == nil {
			t.Errorf("splitWords(%q): want an error", bad)
		}
	}
}

func TestFlattenJumps(t *testing.T) {
	t0 := Target{Name: "dest", Jumps: []Target{
		{Name: "a", Jumps: []Target{{Name: "outer"}}},
		{Name: "b"},
	}}
	var names []string
	for _, h := range flattenJumps(t0) {
		names = append(names, h.Name)
		if h.Jumps != nil {
			t.Errorf("hop %s keeps its jumps", h.Name)
		}
	}
	if got := strings.Join(names, ","); got != "outer,a,b,dest" {
		t.Errorf("hops %s, want outer,a,b,dest", got)
	}
}
