package inventory

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/breakglass/breakglass/internal/yamlx"
)

func TestYAMLForms(t *testing.T) {
	in := `
# Hosts may be null, groups may be null, a host may sit in many groups,
# hosts: and children: may be a single name, vars may use anchors and merges.
all:
  hosts:
    solo:
  children:
    web:
      hosts:
        w1:
        w2: {ansible_port: 2201}
        w[3:4]:2222:
      vars: &webvars
        tuned: yes
        quoted_yes: "yes"
        mode: 0644
        ratio: 0.5
        nothing:
        list: [a, 1, true]
        when: 2024-01-02
        big: 123456789012345678901234567890
        safe: !unsafe '{{ not templated }}'
    empty:
    one:
      hosts: w1
    nested:
      children: web
    east:
      children:
        web:
          vars:
            <<: *webvars
            tuned: no
`
	inv, err := ParseYAML("inv.yml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if got := hostNames(inv.Hosts()); !slices.Equal(got, []string{"solo", "w1", "w2", "w3", "w4"}) {
		t.Errorf("hosts %q", got)
	}
	if got := inv.Groups(); !slices.Equal(got, []string{"all", "east", "empty", "nested", "one", "ungrouped", "web"}) {
		t.Errorf("groups %q", got)
	}
	w1 := mustHost(t, inv, "w1")
	if !slices.Equal(w1.Groups, []string{"all", "east", "nested", "one", "web"}) {
		t.Errorf("w1 groups %q", w1.Groups)
	}
	want := map[string]any{
		"tuned": false, "quoted_yes": "yes", "mode": 420, "ratio": 0.5, "nothing": nil,
		"list": []any{"a", 1, true}, "when": "2024-01-02", "big": "123456789012345678901234567890",
		"safe": "{{ not templated }}",
	}
	if !reflect.DeepEqual(w1.Vars, want) {
		t.Errorf("w1 vars:\n got %#v\nwant %#v", w1.Vars, want)
	}
	if w4 := mustHost(t, inv, "w4"); w4.Vars["ansible_port"] != 2222 {
		t.Errorf("w4 port %v", w4.Vars["ansible_port"])
	}
	if w2 := mustHost(t, inv, "w2"); w2.Vars["ansible_port"] != 2201 {
		t.Errorf("w2 port %v", w2.Vars["ansible_port"])
	}
}

func TestYAMLEmpty(t *testing.T) {
	for _, in := range []string{"", "# only a comment\n", "---\n", "~\n"} {
		inv, err := ParseYAML("inv.yml", []byte(in))
		if err != nil || len(inv.Hosts()) != 0 {
			t.Errorf("ParseYAML(%q) = %v, %v; want an empty inventory", in, inv, err)
		}
	}
}

func TestYAMLErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"unknown key", "all:\n  host:\n    a:\n", []string{`inv.yml:2:3: unknown key "host" in group "all" (known: children, hosts, vars)`}},
		{"unknown key deep", "all:\n  children:\n    web:\n      hosts: {a: }\n      var: {x: 1}\n",
			[]string{`inv.yml:5:7: unknown key "var" in group "web"`}},
		{"hosts as a list", "all:\n  hosts: [a, b]\n", []string{`inv.yml:2:10: hosts of group "all" must be a mapping (name: followed by its vars or nothing), not a list`}},
		{"group as a scalar", "all: 5\n", []string{`inv.yml:1:6: group "all" must be a mapping with keys children, hosts, vars, not "5"`}},
		{"top level list", "- all\n", []string{"inv.yml:1:1: an inventory must be a mapping of groups (such as all:), not a list"}},
		{"host vars as a scalar", "all:\n  hosts:\n    a: 22\n", []string{`inv.yml:3:8: vars of host "a" must be a mapping, not "22"`}},
		{"bad host name", "all:\n  hosts:\n    'a b':\n", []string{`inv.yml:3:5: invalid host name "a b"`}},
		{"CR in host name", "all:\n  hosts:\n    \"a\\rb\":\n", []string{`inv.yml:3:5: invalid host name "a\rb"`}},
		{"bad group name", "all:\n  children:\n    $(reboot):\n", []string{`inv.yml:3:5: invalid group name "$(reboot)"`}},
		{"duplicate host", "all:\n  hosts:\n    a:\n    a:\n", []string{`inv.yml:4:5: duplicate key "a"`}},
		{"bad var name", "all:\n  vars:\n    \"a b\": 1\n", []string{`inv.yml:3:5: invalid variable name "a b"`}},
		{"plugin config", "plugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n", []string{"inv.yml:1:1: this is the configuration of an Ansible inventory plugin"}},
		{"syntax error", "all:\n  hosts:\n    a: [\n", []string{"inv.yml:3:1: did not find expected node content"}},
		{"bad tag", "all:\n  vars:\n    x: !python/object foo\n", []string{"inv.yml:3:8: unsupported YAML tag !python/object"}},
		{"cycle", "all:\n  children:\n    a:\n      children:\n        b:\n          children:\n            a:\n",
			[]string{"inv.yml:5:9: groups form a cycle: a → b → a"}},
		{"all as a child", "all:\n  children:\n    web:\n      children:\n        all:\n", []string{"groups form a cycle"}},
		{"bad range", "all:\n  hosts:\n    w[1:200000]:\n", []string{`inv.yml:3:5: host "w[1:200000]": range stands for more than 100000 hosts`}},
		{
			"every error is reported",
			"all:\n  hosts:\n    'bad;1':\n  children:\n    web:\n      hostz: {}\n    db:\n      hosts:\n        'bad;2':\n",
			[]string{`inv.yml:3:5: invalid host name "bad;1"`, `inv.yml:6:7: unknown key "hostz" in group "web"`, `inv.yml:9:9: invalid host name "bad;2"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := ParseYAML("inv.yml", []byte(tt.in))
			if err == nil {
				t.Fatalf("no error; hosts %q", hostNames(inv.Hosts()))
			}
			got := errorLines(t, err)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
			for i := range got {
				if !strings.Contains(got[i], tt.want[i]) {
					t.Errorf("error %d:\n got %s\nwant %s", i, got[i], tt.want[i])
				}
			}
			var pe *yamlx.PosError
			if !errors.As(err, &pe) {
				t.Errorf("not a *yamlx.PosError: %v", err)
			}
		})
	}
}

// TestHostile feeds input built to exhaust time or memory; each must fail
// (or succeed) quickly, never hang or crash.
func TestHostile(t *testing.T) {
	laughs := "all:\n  vars:\n    a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
	for i := 1; i <= 9; i++ {
		laughs += fmt.Sprintf("    a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	deepGroups := "all: " + strings.Repeat("{children: {g: ", 1100) + "{}" + strings.Repeat("}}", 1100) + "\n"
	var chain strings.Builder
	for i := 0; i < 3000; i++ {
		fmt.Fprintf(&chain, "[g%d:children]\ng%d\n", i, i+1)
	}
	fmt.Fprintf(&chain, "[g3000]\nh\n")
	var wide strings.Builder
	wide.WriteString("[all:vars]\n")
	for i := 0; i < 5000; i++ {
		fmt.Fprintf(&wide, "v%d=%d\n", i, i)
	}
	wide.WriteString("[web]\nh[1:3000]\n")
	var many strings.Builder
	for i := 0; i < 600; i++ {
		fmt.Fprintf(&many, "[g%d]\nh[1:600]\n", i)
	}

	tests := []struct {
		name  string
		parse func(string, []byte) (*Inventory, error)
		in    string
		err   string // "" for success
	}{
		{"alias bomb", ParseYAML, laughs, "too many YAML nodes"},
		{"recursive alias", ParseYAML, "all:\n  vars:\n    x: &x [*x]\n", "nesting deeper than"},
		{"recursive group alias", ParseYAML, "all: &a\n  children:\n    g: *a\n", `group "g" contains itself (through an alias)`},
		{"deep value", ParseYAML, "all:\n  vars:\n    x: " + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + "\n", "nesting deeper than 1000"},
		{"deep groups", ParseYAML, deepGroups, "groups nested deeper than 1000"},
		{"deep JSON", ParseJSON, `{"all": {"vars": {"x": ` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}}}`, "nesting deeper than 1000"},
		{"invalid UTF-8 YAML", ParseYAML, "all:\n  hosts:\n    \xff\xfe:\n", "invalid"},
		{"NUL in YAML", ParseYAML, "all:\n  hosts:\n    \"a\\0b\":\n", "invalid host name"},
		{"long group chain", ParseINI, chain.String(), ""},
		{"many vars times many hosts", ParseINI, wide.String(), "inventory too large"},
		{"many hosts in many groups", ParseINI, many.String(), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			inv, err := tt.parse("inv", []byte(tt.in))
			// Generous: this catches hangs and quadratic blow-ups, not
			// slowness on a busy machine or under -race.
			if d := time.Since(start); d > 30*time.Second {
				t.Errorf("took %s", d)
			}
			switch {
			case tt.err == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Errorf("error %v, want one containing %q", err, tt.err)
			case tt.err == "" && inv == nil:
				t.Error("nil inventory")
			}
		})
	}
}

func TestJSONForms(t *testing.T) {
	in := `{
  "_meta": {"hostvars": {"h1": {"v": 1.0, "i": 7, "s": "yes", "n": null, "big": 12345678901234567890},
                         "stray": {"v": "not in any group: ignored, as Ansible does"}}},
  "plain": ["h1", "h2"],
  "web1.example.com": {"ansible_host": "10.0.0.1"},
  "structured": {"hosts": ["h3"], "vars": {"g": true}, "children": ["plain"]},
  "empty": {},
  "nothing": null
}`
	inv, err := ParseJSON("inv.json", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if got := hostNames(inv.Hosts()); !slices.Equal(got, []string{"h1", "h2", "web1.example.com", "h3"}) {
		t.Errorf("hosts %q", got)
	}
	want := map[string]any{"v": 1.0, "i": 7, "s": "yes", "n": nil, "big": "12345678901234567890", "g": true}
	if h1 := mustHost(t, inv, "h1"); !reflect.DeepEqual(h1.Vars, want) || !slices.Equal(h1.Groups, []string{"all", "plain", "structured"}) {
		t.Errorf("h1: %#v %q", h1.Vars, h1.Groups)
	}
	// Ansible's simplified syntax: an object without hosts, vars or
	// children is a host of that name with those vars.
	if w := mustHost(t, inv, "web1.example.com"); w.Vars["ansible_host"] != "10.0.0.1" || !slices.Equal(w.Groups, []string{"all", "web1.example.com"}) {
		t.Errorf("simplified syntax: %+v", w)
	}
	if !slices.Contains(inv.Groups(), "empty") || !slices.Contains(inv.Groups(), "nothing") {
		t.Errorf("groups %q", inv.Groups())
	}
}

func TestJSONErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"hosts not a list", `{"web": {"hosts": "a"}}`, []string{`inv.json:1:19: hosts of group "web" must be a list of names, not "a"`}},
		{"unknown key", "{\n  \"web\": {\"hosts\": [\"a\"], \"varz\": {}}\n}", []string{`inv.json:2:27: unknown key "varz" in group "web" (known: children, hosts, vars)`}},
		{"syntax", "{\n  \"web\": [\"a\",]\n}", []string{"inv.json:2:15: invalid JSON"}},
		{"truncated", `{"web": [`, []string{"inv.json:1:10: invalid JSON: unexpected end of input"}},
		{"trailing data", `{} {}`, []string{"inv.json:1:4: unexpected data after the JSON value"}},
		{"not an object", `["a"]`, []string{"inv.json:1:1: dynamic inventory must be an object of groups, not a list"}},
		{"invalid UTF-8", "{\"web\": [\"a\xff\"]}", []string{"inv.json:1:12: invalid UTF-8"}},
		{"newline in name", `{"web": ["a\nb"]}`, []string{`inv.json:1:10: invalid host name "a\nb"`}},
		{"bad child", `{"web": {"children": ["x y"]}}`, []string{`inv.json:1:23: invalid group name "x y"`}},
		{"hostvars not an object", `{"_meta": {"hostvars": []}}`, []string{`inv.json:1:24: _meta.hostvars must be an object of host names, not a list`}},
		{"host vars not an object", `{"web": ["a"], "_meta": {"hostvars": {"a": 1}}}`, []string{`inv.json:1:44: _meta.hostvars of "a" must be an object, not "1"`}},
		{"duplicate key", `{"web": ["a"], "web": ["b"]}`, []string{`inv.json:1:16: duplicate key "web"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := ParseJSON("inv.json", []byte(tt.in))
			if err == nil {
				t.Fatalf("no error; hosts %q", hostNames(inv.Hosts()))
			}
			got := errorLines(t, err)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("error %d:\n got %s\nwant %s", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestTooManyHosts(t *testing.T) {
	var sb strings.Builder
	for i := 0; i < 3; i++ {
		fmt.Fprintf(&sb, "[g%d]\ng%d-[1:100000]\n", i, i)
	}
	_, err := ParseINI("inv", []byte(sb.String()))
	if err == nil || !strings.Contains(err.Error(), "inv:6: more than 250000 hosts") {
		t.Errorf("error %v", err)
	}
}

// TestAliasBudgetScales: the alias budget stops a bomb but not a large
// inventory that uses no aliases, however many nodes it has.
func TestAliasBudgetScales(t *testing.T) {
	old := maxYAMLNodes
	maxYAMLNodes = 10_000
	t.Cleanup(func() { maxYAMLNodes = old })

	var sb strings.Builder
	sb.WriteString("all:\n  hosts:\n")
	for i := 0; i < 5000; i++ {
		fmt.Fprintf(&sb, "    h%04d: {ansible_host: 10.0.%d.%d, ansible_port: 22, rack: r%d, tags: [a, b]}\n", i, i/256, i%256, i%40)
	}
	inv, err := ParseYAML("big.yml", []byte(sb.String()))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(inv.Hosts()); n != 5000 {
		t.Errorf("%d hosts", n)
	}
	bomb := "all:\n  vars:\n    a: &a [x, x, x, x, x, x, x, x, x, x]\n    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n" +
		"    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n    d: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
	if _, err := ParseYAML("bomb.yml", []byte(bomb)); err == nil || !strings.Contains(err.Error(), "too many YAML nodes") {
		t.Errorf("bomb: %v", err)
	}
}
