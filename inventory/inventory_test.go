package inventory

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// writeTree writes files (path → content) under a new temporary directory
// and returns it. A path ending in "*" is written executable, without the *.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, "*") {
			name, mode = strings.TrimSuffix(name, "*"), 0o755
		}
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func mustLoad(t *testing.T, paths ...string) *Inventory {
	t.Helper()
	inv, err := Load(paths...)
	if err != nil {
		t.Fatalf("Load(%q): %v", paths, err)
	}
	return inv
}

func hostNames(hs []*Host) []string {
	out := []string{}
	for _, h := range hs {
		out = append(out, h.Name)
	}
	return out
}

func mustHost(t *testing.T, inv *Inventory, name string) *Host {
	t.Helper()
	h, ok := inv.Host(name)
	if !ok {
		t.Fatalf("no host %q; have %v", name, hostNames(inv.Hosts()))
	}
	return h
}

func TestLoadTestdata(t *testing.T) {
	type want struct {
		groups []string
		vars   map[string]any // a subset of Vars that must match exactly
	}
	tests := []struct {
		path   string
		hosts  []string
		groups []string
		want   map[string]want
	}{
		{
			path: "testdata/hosts.yml",
			hosts: []string{"bastion.example.com", "web01.example.com", "web02.example.com", "web03.example.com",
				"web-canary.example.com", "db-a.example.com", "db-b.example.com", "db-c.example.com", "staging-db.example.com"},
			groups: []string{"all", "db", "prod", "staging", "ungrouped", "web"},
			want: map[string]want{
				"bastion.example.com": {[]string{"all", "ungrouped"}, map[string]any{"ansible_host": "203.0.113.10", "ansible_user": "admin"}},
				"web-canary.example.com": {[]string{"all", "prod", "web"}, map[string]any{
					"ansible_port": 2222, "http_port": 80, "env": "production", "ansible_ssh_common_args": "-J bastion.example.com",
					"proxy": map[string]any{"host": "proxy.example.com", "port": 3128}}},
				// prod and staging are at depth 1 and merge alphabetically,
				// so staging's env wins; web is at depth 2 (under prod).
				"web03.example.com": {[]string{"all", "prod", "staging", "web"}, map[string]any{"env": "staging"}},
				"db-b.example.com": {[]string{"all", "db", "prod"}, map[string]any{
					"ansible_user": "postgres", "proxy": map[string]any{"host": "proxy.example.com", "port": 8080}}},
				// "backup: no" is false in YAML 1.1, as Ansible reads it.
				"staging-db.example.com": {[]string{"all", "staging"}, map[string]any{"backup": false, "ansible_host": "10.1.0.5"}},
			},
		},
		{
			path: "testdata/hosts.ini",
			hosts: []string{"bastion.example.com", "web01.example.com", "web02.example.com", "web03.example.com",
				"web-canary.example.com", "web10.example.com", "db-a.example.com", "db-b.example.com", "db-c.example.com",
				"db-archive.example.com", "lb1.example.com", "lb5.example.com", "lb9.example.com", "staging-db.example.com"},
			groups: []string{"all", "db", "lb", "prod", "staging", "ungrouped", "web"},
			want: map[string]want{
				"bastion.example.com": {[]string{"all", "ungrouped"}, map[string]any{"ansible_host": "203.0.113.10", "http_port": 8080}},
				"web-canary.example.com": {[]string{"all", "prod", "web"}, map[string]any{
					"ansible_port": 2222, "env": "production", "ansible_user": "admin", "mode": "0644"}},
				"web10.example.com": {[]string{"all", "prod", "web"}, map[string]any{
					"ansible_host": "10.0.1.10", "ansible_user": "deploy", "max_conns": 100, "weight": 0.5}},
				"db-archive.example.com": {[]string{"all", "db", "prod"}, map[string]any{
					"backup": true, "retention": "30d", "tags": []any{"cold", "slow"}, "ansible_user": "admin"}},
				// staging (depth 1) merges before web (depth 2, under prod).
				"web03.example.com": {[]string{"all", "prod", "staging", "web"}, map[string]any{"env": "staging"}},
			},
		},
		{
			path:   "testdata/static.json",
			hosts:  []string{"web01.example.com", "web02.example.com"},
			groups: []string{"all", "ungrouped", "web"},
			want: map[string]want{
				"web02.example.com": {[]string{"all", "web"}, map[string]any{"ansible_port": 2222, "http_port": 80}},
			},
		},
		{
			path:   "testdata/dynamic.json",
			hosts:  []string{"web01.example.com", "web02.example.com", "db01.example.com"},
			groups: []string{"all", "db", "prod", "ungrouped", "web"},
			want: map[string]want{
				"web02.example.com": {[]string{"all", "prod", "web"}, map[string]any{
					"ansible_host": "10.0.1.2", "tags": []any{"blue", "canary"}, "http_port": 8080, "env": "production"}},
				"db01.example.com": {[]string{"all", "db", "prod"}, map[string]any{"ansible_port": 2200}},
			},
		},
		{
			path:   "testdata/dynamic.sh",
			hosts:  []string{"app1.cloud.example.com", "app2.cloud.example.com"},
			groups: []string{"all", "app", "eu", "ungrouped"},
			want: map[string]want{
				"app2.cloud.example.com": {[]string{"all", "app", "eu"}, map[string]any{"ansible_host": "198.51.100.12", "zone": "eu-1b", "role": "app"}},
			},
		},
		{
			path:   "testdata/dynamic-nometa.sh",
			hosts:  []string{"old1.example.com", "old2.example.com"},
			groups: []string{"all", "legacy", "ungrouped"},
			want: map[string]want{
				"old2.example.com": {[]string{"all", "legacy"}, map[string]any{"ansible_host": "192.0.2.2"}},
			},
		},
		{
			path: "testdata/site",
			// Files in name order: 10-hosts.ini, 20-cloud.yml, 30-cache.sh;
			// README.md, *.bak, *.retry and dotfiles are skipped.
			hosts: []string{"web01.example.com", "web02.example.com", "db01.example.com", "mon01.example.com",
				"web03.example.com", "cache01.example.com"},
			groups: []string{"all", "cache", "db", "monitoring", "prod", "ungrouped", "web"},
			want: map[string]want{
				// host_vars file beats everything.
				"web01.example.com": {[]string{"all", "prod", "web"}, map[string]any{
					"level": "host-file", "ansible_host": "10.0.1.1", "http_port": 8080, "env": "production", "ansible_user": "admin"}},
				// The host's inventory var beats group_vars/web/; group_vars/web/
				// beats [web:vars].
				"web02.example.com": {[]string{"all", "prod", "web"}, map[string]any{"level": "web-file", "http_port": 8081}},
				// host_vars/NAME/ is a directory of files, later files win.
				"db01.example.com": {[]string{"all", "db", "prod"}, map[string]any{"level": "host-override", "ansible_host": "10.0.2.1"}},
				// group_vars/all.yml beats the script's inventory group vars.
				"cache01.example.com": {[]string{"all", "cache"}, map[string]any{"level": "all-file"}},
				"mon01.example.com":   {[]string{"all", "monitoring"}, map[string]any{"level": "all-file", "ntp_server": "ntp.example.com"}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.path), func(t *testing.T) {
			inv := mustLoad(t, tt.path)
			if got := hostNames(inv.Hosts()); !slices.Equal(got, tt.hosts) {
				t.Errorf("hosts:\n got %q\nwant %q", got, tt.hosts)
			}
			if got := inv.Groups(); !slices.Equal(got, tt.groups) {
				t.Errorf("groups: got %q, want %q", got, tt.groups)
			}
			for name, w := range tt.want {
				h := mustHost(t, inv, name)
				if !slices.Equal(h.Groups, w.groups) {
					t.Errorf("%s groups: got %q, want %q", name, h.Groups, w.groups)
				}
				for k, v := range w.vars {
					if !reflect.DeepEqual(h.Vars[k], v) {
						t.Errorf("%s var %s: got %#v, want %#v", name, k, h.Vars[k], v)
					}
				}
			}
		})
	}
}

func TestLoadSiteWarnsAboutVault(t *testing.T) {
	inv := mustLoad(t, "testdata/site")
	w := strings.Join(inv.Warnings(), "\n")
	for _, s := range []string{"group_vars/web/vault.yml: vault-encrypted file", `prod.yaml:3: variable "db_password" is vault-encrypted`} {
		if !strings.Contains(w, s) {
			t.Errorf("warnings %q lack %q", w, s)
		}
	}
	if _, ok := mustHost(t, inv, "web01.example.com").Vars["db_password"]; ok {
		t.Error("a vault-encrypted variable must not be set")
	}
	if _, ok := inv.Host("hidden.example.com"); ok {
		t.Error("dotfiles must be skipped")
	}
	if _, ok := inv.Host("should-not-load.example.com"); ok {
		t.Error("*.bak must be skipped")
	}
}

// TestPrecedence pins Ansible's variable precedence.
func TestPrecedence(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		host  string
		want  map[string]any
	}{
		{
			name: "all < parent < child < host",
			files: map[string]string{"hosts": `
[all:vars]
x=all
only_all=1
[parent:children]
child
[parent:vars]
x=parent
only_parent=2
[child]
h1
h2 x=host
[child:vars]
x=child
`},
			host: "h1",
			want: map[string]any{"x": "child", "only_all": 1, "only_parent": 2},
		},
		{
			name:  "host line beats its groups",
			files: map[string]string{"hosts": "[child]\nh2 x=host\n[child:vars]\nx=child\n"},
			host:  "h2",
			want:  map[string]any{"x": "host"},
		},
		{
			name:  "siblings merge alphabetically, later wins, whatever the file order",
			files: map[string]string{"hosts": "[zeta]\nh\n[alpha]\nh\n[zeta:vars]\nx=zeta\n[alpha:vars]\nx=alpha\n"},
			host:  "h",
			want:  map[string]any{"x": "zeta"},
		},
		{
			name: "ansible_group_priority reorders siblings and is not a variable",
			files: map[string]string{"hosts": "[zeta]\nh\n[alpha]\nh\n[zeta:vars]\nx=zeta\n" +
				"[alpha:vars]\nx=alpha\nansible_group_priority=10\n"},
			host: "h",
			want: map[string]any{"x": "alpha"},
		},
		{
			name: "a deeper group wins over a shallower one, whatever the names",
			files: map[string]string{"hosts": "[aaa]\nh\n[bbb]\nh\n[zzz:children]\naaa\n" +
				"[aaa:vars]\nx=aaa\n[bbb:vars]\nx=bbb\n[zzz:vars]\nx=zzz\n"},
			host: "h",
			want: map[string]any{"x": "aaa"},
		},
		{
			name: "depth is the longest path from all",
			files: map[string]string{"hosts.yml": `
all:
  children:
    c:
      hosts: {h: }
      vars: {x: c}
    b:
      hosts: {h: }
      vars: {x: b}
    p:
      children:
        c:
`},
			// c is at depth 1 under all and depth 2 under p: 2, so after b.
			host: "h",
			want: map[string]any{"x": "c"},
		},
		{
			name: "group_vars files beat inventory group vars, all file included",
			files: map[string]string{
				"hosts":                 "[web]\nh z=host\n[web:vars]\nx=ini\ny=ini\nz=ini\n",
				"group_vars/all.yml":    "x: all-file\n",
				"group_vars/web.yml":    "y: web-file\nz: web-file\n",
				"host_vars/other.yml":   "x: not-this-host\n",
				"group_vars/nosuch.yml": "x: [not, a, group]\n",
			},
			host: "h",
			// all-file beats [web:vars] (Ansible: "inventory group_vars/all"
			// is above "inventory file or script group vars"); the host
			// line beats group_vars files.
			want: map[string]any{"x": "all-file", "y": "web-file", "z": "host"},
		},
		{
			name: "host_vars file beats the host line",
			files: map[string]string{
				"hosts":          "h x=line\n",
				"host_vars/h":    "x: file\n",
				"group_vars/all": "x: all\n",
			},
			host: "h",
			want: map[string]any{"x": "file"},
		},
		{
			name: "group_vars files merge by group order too",
			files: map[string]string{
				"hosts":                 "[zeta]\nh\n[alpha]\nh\n",
				"group_vars/alpha.yaml": "x: alpha\n",
				"group_vars/zeta.json":  `{"x": "zeta"}`,
			},
			host: "h",
			want: map[string]any{"x": "zeta"},
		},
		{
			name: "group_vars/NAME directory shadows NAME.yml, as in Ansible",
			files: map[string]string{
				"hosts":                 "[web]\nh\n",
				"group_vars/web/a.yml":  "x: dir-a\ny: dir-a\n",
				"group_vars/web/b.yml":  "x: dir-b\n",
				"group_vars/web/c.txt":  "x: not-yaml-ext\n",
				"group_vars/web/.d.yml": "x: hidden\n",
				"group_vars/web/e.yml~": "x: backup\n",
				"group_vars/web/sub/f":  "z: nested\n",
				"group_vars/web.yml":    "x: shadowed\n",
			},
			host: "h",
			want: map[string]any{"x": "dir-b", "y": "dir-a", "z": "nested"},
		},
		{
			name: "merging is shallow (hash_behaviour=replace)",
			files: map[string]string{
				"hosts":              "[web]\nh\n",
				"group_vars/all.yml": "d: {a: 1, b: 2}\n",
				"group_vars/web.yml": "d: {b: 3}\n",
			},
			host: "h",
			want: map[string]any{"d": map[string]any{"b": 3}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeTree(t, tt.files)
			inv := mustLoad(t, dir)
			h := mustHost(t, inv, tt.host)
			if !reflect.DeepEqual(h.Vars, tt.want) {
				t.Errorf("vars:\n got %#v\nwant %#v", h.Vars, tt.want)
			}
		})
	}
}

func TestVarsNextToInventoryFile(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"prod/hosts.ini":          "[web]\nw1\n",
		"prod/group_vars/web.yml": "x: from-group-vars\n",
		"prod/host_vars/w1.yml":   "y: from-host-vars\n",
	})
	inv := mustLoad(t, filepath.Join(dir, "prod/hosts.ini"))
	want := map[string]any{"x": "from-group-vars", "y": "from-host-vars"}
	if got := mustHost(t, inv, "w1").Vars; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestLoadSeveralSources(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"a.ini": "[web]\nw1\nw2 x=a\n[web:vars]\ng=a\n",
		"b.yml": "all:\n  children:\n    web:\n      hosts:\n        w2: {x: b}\n        w3:\n      vars: {g: b}\n    db:\n      hosts: {d1: }\n",
	})
	inv := mustLoad(t, filepath.Join(dir, "a.ini"), filepath.Join(dir, "b.yml"), "extra1,extra2:2200,")
	if got, want := hostNames(inv.Hosts()), []string{"w1", "w2", "w3", "d1", "extra1", "extra2"}; !slices.Equal(got, want) {
		t.Errorf("hosts: got %q, want %q", got, want)
	}
	if got := mustHost(t, inv, "w2").Vars; got["x"] != "b" || got["g"] != "b" {
		t.Errorf("later source must win: %v", got)
	}
	if got := mustHost(t, inv, "extra2"); got.Vars["ansible_port"] != 2200 || !slices.Equal(got.Groups, []string{"all", "ungrouped"}) {
		t.Errorf("host list entry: %+v", got)
	}
}

func TestUngrouped(t *testing.T) {
	inv, err := ParseINI("hosts", []byte("solo\nboth\n[all]\nexplicit\n[web]\nboth\n[ungrouped]\nlisted\n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string][]string{
		"solo":     {"all", "ungrouped"},
		"explicit": {"all", "ungrouped"},
		"listed":   {"all", "ungrouped"},
		"both":     {"all", "web"}, // in a real group, so no longer ungrouped
	}
	for name, want := range tests {
		if got := mustHost(t, inv, name).Groups; !slices.Equal(got, want) {
			t.Errorf("%s: got %q, want %q", name, got, want)
		}
	}
}

func TestAPI(t *testing.T) {
	inv := mustLoad(t, "testdata/hosts.yml")
	if _, ok := inv.Host("nosuch"); ok {
		t.Error("Host(nosuch) found")
	}
	hs := inv.Hosts()
	hs[0] = nil
	if inv.Hosts()[0] == nil {
		t.Error("Hosts must return a copy")
	}
	gs := inv.Groups()
	gs[0] = "changed"
	if inv.Groups()[0] != "all" {
		t.Error("Groups must return a copy")
	}
	if _, err := Load(); err == nil {
		t.Error("Load() with no source must fail")
	}
}
