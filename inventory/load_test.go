package inventory

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSniff(t *testing.T) {
	tests := map[string]string{
		"all:\n  hosts:\n":             "yaml",
		"# comment\n\nall:\n":          "yaml",
		"---\nall:\n":                  "yaml",
		"web: {hosts: {a: }}\n":        "yaml",
		"\"all\":\n":                   "yaml",
		"{\"all\": {}}":                "json",
		"[web]\nh1\n":                  "ini",
		"h1\nh2\n":                     "ini",
		"h1:2222\n":                    "ini",
		"h1 ansible_host=x:y\n":        "ini",
		"; ini comment\n[all:vars]\n":  "ini",
		"[2001:db8::1]:22\n":           "ini",
		"":                             "ini",
		"\xef\xbb\xbfall:\n  hosts:\n": "yaml",
	}
	for in, want := range tests {
		if got := sniff([]byte(in)); got != want {
			t.Errorf("sniff(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestLoadFormatsByNameAndContent(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"a-yaml-without-extension": "all:\n  hosts:\n    y1:\n",
		"b-json-without-extension": `{"j": ["j1"]}`,
		"c-ini-without-extension":  "[i]\ni1\n",
		"d.yaml":                   "all:\n  hosts:\n    y2:\n",
		"e.ini":                    "i2\n",
		"f-exec-ini-no-shebang*":   "[x]\nx1\n", // executable but not a script: static
		"sub/g.yml":                "all:\n  hosts:\n    sub1:\n",
		"sub/.hidden/h.yml":        "all:\n  hosts:\n    hidden:\n",
		"notes.txt":                "not an inventory",
		"inventory.cfg":            "[defaults]\nforks=5\n",
	})
	inv := mustLoad(t, dir)
	want := []string{"y1", "j1", "i1", "y2", "i2", "x1", "sub1"}
	if got := hostNames(inv.Hosts()); !slices.Equal(got, want) {
		t.Errorf("hosts %q, want %q", got, want)
	}
}

func TestLoadErrorsFromEverySource(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"a.ini":              "[web]\nok\nbad;host\n",
		"b.yml":              "all:\n  hostz:\n",
		"c.json":             `{"web": ["ok2"], "db": "x"}`,
		"vault.yml":          "$ANSIBLE_VAULT;1.1;AES256\n6231336539\n",
		"group_vars/web.yml": "x: [unclosed\n",
	})
	_, err := Load(dir, filepath.Join(dir, "missing.ini"))
	if err == nil {
		t.Fatal("no error")
	}
	got := strings.Join(errorLines(t, err), "\n")
	for _, want := range []string{
		filepath.Join(dir, "a.ini") + `:3: invalid host name "bad;host"`,
		filepath.Join(dir, "b.yml") + `:2:3: unknown key "hostz"`,
		filepath.Join(dir, "c.json") + `:1:24: group "db" must be a list of hosts`,
		filepath.Join(dir, "vault.yml") + ": vault-encrypted inventory file",
		"missing.ini: no such file or directory",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("errors lack %q:\n%s", want, got)
		}
	}
	// group_vars are read only once the inventory itself is valid.
	if strings.Contains(got, "group_vars") {
		t.Errorf("group_vars read despite inventory errors:\n%s", got)
	}

	_, err = Load(writeTree(t, map[string]string{"hosts": "[web]\nw\n", "group_vars/web.yml": "x: [unclosed\n", "host_vars/w.yml": "- a list\n"}))
	got = strings.Join(errorLines(t, err), "\n")
	for _, want := range []string{"group_vars/web.yml:1:1: did not find expected", `host_vars/w.yml:1:1: a vars file must be a mapping, not a list`} {
		if !strings.Contains(got, want) {
			t.Errorf("errors lack %q:\n%s", want, got)
		}
	}
}

func TestScripts(t *testing.T) {
	old := scriptTimeout
	scriptTimeout = 500 * time.Millisecond
	t.Cleanup(func() { scriptTimeout = old })
	t.Setenv("BREAKGLASS_BECOME_PASSWORD", "s3cret")

	dir := writeTree(t, map[string]string{
		"slow.sh*":     "#!/bin/sh\nsleep 5\n",
		"fails.sh*":    "#!/bin/sh\necho 'cannot reach the CMDB' >&2\nexit 3\n",
		"garbage.sh*":  "#!/bin/sh\necho '{\"web\": [}'\n",
		"env.sh*":      "#!/bin/sh\nprintf '{\"_meta\": {\"hostvars\": {\"e1\": {\"seen\": \"%s\"}}}, \"env\": [\"e1\"]}' \"$BREAKGLASS_BECOME_PASSWORD\"\n",
		"daemon.sh*":   "#!/bin/sh\n(sleep 5) &\necho '{\"d\": [\"d1\"]}'\n",
		"hostfail.sh*": "#!/bin/sh\n[ \"$1\" = --list ] && { echo '{\"h\": [\"h1\"]}'; exit 0; }\nexit 1\n",
	})
	tests := []struct {
		script string
		err    string
		hosts  []string
	}{
		{"slow.sh", "slow.sh --list: timed out after 500ms", nil},
		{"fails.sh", "fails.sh --list: exit status 3: cannot reach the CMDB", nil},
		{"garbage.sh", "garbage.sh --list:1:10: invalid JSON", nil},
		{"env.sh", "", []string{"e1"}},
		{"daemon.sh", "", []string{"d1"}},
		{"hostfail.sh", "hostfail.sh --host h1: exit status 1", nil},
	}
	for _, tt := range tests {
		t.Run(tt.script, func(t *testing.T) {
			start := time.Now()
			inv, err := Load(filepath.Join(dir, tt.script))
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %s", d)
			}
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := hostNames(inv.Hosts()); !slices.Equal(got, tt.hosts) {
				t.Errorf("hosts %q, want %q", got, tt.hosts)
			}
		})
	}
	inv := mustLoad(t, filepath.Join(dir, "env.sh"))
	if got := mustHost(t, inv, "e1").Vars["seen"]; got != "" {
		t.Errorf("the script saw BREAKGLASS_BECOME_PASSWORD=%q", got)
	}
}

func TestHostList(t *testing.T) {
	inv := mustLoad(t, "a.example.com, b.example.com:2200 ,")
	if got := hostNames(inv.Hosts()); !slices.Equal(got, []string{"a.example.com", "b.example.com"}) {
		t.Errorf("hosts %q", got)
	}
	if got := mustHost(t, inv, "b.example.com").Vars; !reflect.DeepEqual(got, map[string]any{"ansible_port": 2200}) {
		t.Errorf("vars %v", got)
	}
	if _, err := Load("ok,bad;name"); err == nil {
		t.Error("a bad name in a host list must fail")
	}
}

func TestBuffers(t *testing.T) {
	full := false
	c := &capBuffer{max: 4, onFull: func() { full = true }}
	c.Write([]byte("ab"))
	c.Write([]byte("cde"))
	c.Write([]byte("f"))
	if !c.full || !full || c.String() != "ab" {
		t.Errorf("capBuffer: full=%v onFull=%v %q", c.full, full, c.String())
	}
	tb := &tailBuffer{max: 4}
	tb.Write([]byte("abc"))
	tb.Write([]byte("defg\xff"))
	if got := tb.String(); got != "efg?" {
		t.Errorf("tailBuffer %q", got)
	}
}

func TestUnreadableSource(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads everything")
	}
	dir := writeTree(t, map[string]string{"hosts": "h\n"})
	p := filepath.Join(dir, "hosts")
	if err := os.Chmod(p, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("error %v", err)
	}
}
