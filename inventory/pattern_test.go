package inventory

import (
	"slices"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	inv := mustLoad(t, "testdata/hosts.yml")
	const (
		bastion = "bastion.example.com"
		w1      = "web01.example.com"
		w2      = "web02.example.com"
		w3      = "web03.example.com"
		canary  = "web-canary.example.com"
		dba     = "db-a.example.com"
		dbb     = "db-b.example.com"
		dbc     = "db-c.example.com"
		sdb     = "staging-db.example.com"
	)
	every := []string{bastion, w1, w2, w3, canary, dba, dbb, dbc, sdb}
	tests := []struct {
		pattern string
		want    []string
	}{
		{"all", every},
		{"*", every},
		{"web", []string{w1, w2, w3, canary}},
		{"prod", []string{w1, w2, w3, canary, dba, dbb, dbc}},
		{"ungrouped", []string{bastion}},
		{"web:db", []string{w1, w2, w3, canary, dba, dbb, dbc}},
		{"db:web", []string{w1, w2, w3, canary, dba, dbb, dbc}}, // inventory order, not pattern order
		{"web,db", []string{w1, w2, w3, canary, dba, dbb, dbc}},
		{" web : db ", []string{w1, w2, w3, canary, dba, dbb, dbc}},
		{"web:!staging", []string{w1, w2, canary}},
		{"web:&staging", []string{w3}},
		{"prod:&staging", []string{w3}},
		{"&staging:prod", []string{w3}}, // intersections apply after unions wherever written
		{"!staging:web", []string{w1, w2, canary}},
		{"!staging", []string{bastion, w1, w2, canary, dba, dbb, dbc}}, // only exclusions: from all
		{"&web", []string{w1, w2, w3, canary}},
		{"web:db:&prod:!staging:!db-c.example.com", []string{w1, w2, canary, dba, dbb}},
		{sdb + ":" + bastion, []string{bastion, sdb}},
		{"web0*", []string{w1, w2, w3}},
		{"web*", []string{w1, w2, w3, canary}},
		{"*.example.com", every},
		{"db-[ab]*", []string{dba, dbb}},
		{"db-[!a]*", []string{dbb, dbc}},
		{"db-?.example.com", []string{dba, dbb, dbc}},
		{"~web0[12]", []string{w1, w2}},
		{"~(web|db)-", []string{canary, dba, dbb, dbc}},
		{"~stag", []string{w3, sdb}}, // the staging group and the host
		{"~.*canary", []string{canary}},
		{"web[0]", []string{w1}},
		{"web[-1]", []string{canary}},
		{"web[1:2]", []string{w2, w3}},
		{"web[2:]", []string{w3, canary}},
		{"web[10]", []string{}},
		{"web:!web[0]", []string{w2, w3, canary}},
		{"nosuch", []string{}},
		{"nosuch*", []string{}},
		{"~nosuch", []string{}},
		{"web:&nosuch", []string{}},
		// As in Ansible, globs and regexps match group names too, and "all"
		// is a group: this selects every host.
		{"a*", every},
	}
	for _, tt := range tests {
		got, err := inv.Match(tt.pattern)
		if err != nil {
			t.Errorf("Match(%q): %v", tt.pattern, err)
			continue
		}
		if got == nil {
			t.Errorf("Match(%q) = nil, want a non-nil slice", tt.pattern)
		}
		if names := hostNames(got); !slices.Equal(names, tt.want) {
			t.Errorf("Match(%q):\n got %q\nwant %q", tt.pattern, names, tt.want)
		}
	}
}

func TestMatchErrors(t *testing.T) {
	inv := mustLoad(t, "testdata/hosts.yml")
	for _, p := range []string{"", "  ", ":", ",", "!", "~", "web:!~", "~[", "web[0", "web]", "~(", "web:~a(b", "db-[z-a]"} {
		if got, err := inv.Match(p); err == nil {
			t.Errorf("Match(%q) = %q, want an error", p, hostNames(got))
		}
	}
}

func TestMatchHostBeforeGroup(t *testing.T) {
	// A term naming a host exactly is that host, even when a group has the
	// same name (Ansible's shortcut); under & and ! the group wins.
	inv, err := ParseINI("inv", []byte("[web]\nweb\nw1\n[other]\nx\n"))
	if err != nil {
		t.Fatal(err)
	}
	for pattern, want := range map[string][]string{
		"web":      {"web"},
		"all:&web": {"web", "w1"},
		"all:!web": {"x"},
	} {
		got, err := inv.Match(pattern)
		if err != nil || !slices.Equal(hostNames(got), want) {
			t.Errorf("Match(%q) = %q, %v; want %q", pattern, hostNames(got), err, want)
		}
	}
}

func TestMatchIPv6(t *testing.T) {
	inv, err := ParseINI("inv", []byte("[v6]\n2001:db8::1\n[2001:db8::2]:2222\n[v4]\n192.0.2.1\n"))
	if err != nil {
		t.Fatal(err)
	}
	for pattern, want := range map[string][]string{
		"2001:db8::1":     {"2001:db8::1"},
		"[2001:db8::2]":   {}, // brackets are not part of the name
		"2001:db8::2":     {"2001:db8::2"},
		"v6,!2001:db8::1": {"2001:db8::2"},
		"192.0.2.1:v6":    {"2001:db8::1", "2001:db8::2", "192.0.2.1"},
		// Split on ':' as Ansible does: "~2001", "db8", "1"; write regexps
		// holding ':' with ',' separators.
		"~2001:db8::1":   {"2001:db8::1", "2001:db8::2"},
		"~2001:db8::1$,": {"2001:db8::1"},
	} {
		got, err := inv.Match(pattern)
		if err != nil || !slices.Equal(hostNames(got), want) {
			t.Errorf("Match(%q) = %q, %v; want %q", pattern, hostNames(got), err, want)
		}
	}
	if h := mustHost(t, inv, "2001:db8::2"); h.Vars["ansible_port"] != 2222 {
		t.Errorf("port %v", h.Vars["ansible_port"])
	}
}

func TestGlobToRegexp(t *testing.T) {
	tests := []struct {
		glob, name string
		want       bool
	}{
		{"web*", "web01", true},
		{"web*", "xweb01", false},
		{"w?b", "web", true},
		{"w[ae]b", "wab", true},
		{"w[!ae]b", "wab", false},
		{"w[!ae]b", "wxb", true},
		{"w[a-c]b", "wbb", true},
		{"a.b", "axb", false},
		{"a[", "a[", true},
		{"[]]", "]", true},
		{"w[^]", "w^", true},
		{"w(x)+", "w(x)+", true},
		{"*", "", true},
	}
	for _, tt := range tests {
		m, err := compileTerm(tt.glob)
		if err != nil {
			t.Errorf("compileTerm(%q): %v", tt.glob, err)
			continue
		}
		if got := m(tt.name); got != tt.want {
			t.Errorf("glob %q on %q = %v, want %v (regexp %s)", tt.glob, tt.name, got, tt.want, globToRegexp(tt.glob))
		}
	}
}

func TestSplitPattern(t *testing.T) {
	tests := map[string][]string{
		"a:b":         {"a", "b"},
		"a,b:c":       {"a", "b:c"},
		"a:!b:&c":     {"a", "!b", "&c"},
		"web[1:3]:db": {"web[1:3]", "db"},
		"a b":         {"a", "b"},
		"::1":         {"::1"},
		"[::1]":       {"[::1]"},
		"~a[:]b,":     {"~a[:]b"},
	}
	for in, want := range tests {
		if got, err := splitPattern(in); err != nil || !slices.Equal(got, want) {
			t.Errorf("splitPattern(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", strings.Repeat(":", 10), "a:[b", "a]:b", "~"} {
		if got, err := splitPattern(in); err == nil {
			t.Errorf("splitPattern(%q) = %q, want an error", in, got)
		}
	}
}
