package inventory

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// seed adds every testdata file whose name ends in one of exts, plus
// extra, to the corpus of f.
func seed(f *testing.F, exts []string, extra ...string) {
	err := filepath.WalkDir("testdata", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		for _, ext := range exts {
			if strings.HasSuffix(path, ext) {
				data, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				f.Add(data)
			}
		}
		return nil
	})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range extra {
		f.Add([]byte(s))
	}
}

// checkInventory asserts what must hold of any inventory a parser accepts.
func checkInventory(t *testing.T, inv *Inventory, err error) {
	if err != nil {
		if inv != nil || err.Error() == "" {
			t.Fatalf("error %q with inventory %v", err, inv)
		}
		return
	}
	hosts := inv.Hosts()
	for _, h := range hosts {
		if e := validHostName(h.Name); e != nil {
			t.Fatalf("accepted host name: %v", e)
		}
		if got, ok := inv.Host(h.Name); !ok || got != h {
			t.Fatalf("Host(%q) does not find it", h.Name)
		}
		if !slices.IsSorted(h.Groups) || !slices.Contains(h.Groups, "all") {
			t.Fatalf("host %q groups %q", h.Name, h.Groups)
		}
	}
	groups := inv.Groups()
	if !slices.IsSorted(groups) || !slices.Contains(groups, "all") || !slices.Contains(groups, "ungrouped") {
		t.Fatalf("groups %q", groups)
	}
	for _, g := range groups {
		if e := validGroupName(g); e != nil {
			t.Fatalf("accepted group name: %v", e)
		}
	}
	all, err := inv.Match("all")
	if err != nil || len(all) != len(hosts) {
		t.Fatalf("Match(all) = %d hosts, %v; want %d", len(all), err, len(hosts))
	}
	for _, p := range []string{"*", "web:!db", "&prod", "~w.*", "w*[0-9]", "web[0]"} {
		if _, err := inv.Match(p); err != nil {
			t.Fatalf("Match(%q): %v", p, err)
		}
	}
}

func FuzzParseINI(f *testing.F) {
	seed(f, []string{".ini", "hosts"},
		"[web]\nw[01:03] a=1 b='x' c=\"[1, {'k': (2,)}]\"\n[p:children]\nweb\n[p:vars]\nx=True # c\n",
		"h:22\n[2001:db8::1]:22\n[a:vars]\n[a]\n",
		"[a:children]\nb\n[b:children]\na\n",
		"h x=\"unterminated\n",
		"w[a:z][0:9]\n",
	)
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, err := ParseINI("fuzz.ini", data)
		checkInventory(t, inv, err)
	})
}

func FuzzParseYAML(f *testing.F) {
	seed(f, []string{".yml", ".yaml"},
		"all:\n  hosts:\n    a:\n  children:\n    b:\n      hosts: {c: {x: &x [1, 2]}}\n      vars: {y: *x, <<: {z: 1}}\n",
		"all: &a\n  children:\n    g: *a\n",
		"all:\n  vars:\n    a: &a [x, x]\n    b: &b [*a, *a]\n    c: [*b, *b]\n",
		"plugin: aws_ec2\n",
		"all:\n  hosts:\n    w[1:3]:2222:\n    '[::1]:22':\n",
	)
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, err := ParseYAML("fuzz.yml", data)
		checkInventory(t, inv, err)
	})
}

func FuzzParseJSON(f *testing.F) {
	seed(f, []string{".json"},
		`{"_meta": {"hostvars": {"a": {"x": 1.5e3}}}, "g": ["a"], "p": {"children": ["g"], "vars": {"y": null}}}`,
		`{"web1": {"ansible_host": "x"}, "e": {}, "n": null}`,
		`{"a": {"hosts": ["h"], "children": ["a"]}}`,
		`[[[[]]]]`,
	)
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, err := ParseJSON("fuzz.json", data)
		checkInventory(t, inv, err)
	})
}

// bigINI is an INI inventory of n hosts in n/100 groups under two parents,
// with host and group variables, like a large real fleet.
func bigINI(n int) []byte {
	var sb strings.Builder
	groups := max(n/100, 1)
	for g := 0; g < groups; g++ {
		fmt.Fprintf(&sb, "[web%03d]\n", g)
		for h := 0; h < n/groups; h++ {
			fmt.Fprintf(&sb, "web%03d-%03d.dc1.example.com ansible_host=10.%d.%d.%d ansible_port=22 rack=%d\n", g, h, g/256, g%256, h%256, h%42)
		}
		fmt.Fprintf(&sb, "[web%03d:vars]\nhttp_port=80\ntier='frontend'\n", g)
	}
	sb.WriteString("[prod:children]\n")
	for g := 0; g < groups; g += 2 {
		fmt.Fprintf(&sb, "web%03d\n", g)
	}
	sb.WriteString("[staging:children]\n")
	for g := 1; g < groups; g += 2 {
		fmt.Fprintf(&sb, "web%03d\n", g)
	}
	sb.WriteString("[all:vars]\nansible_user=admin\nntp_server=ntp.example.com\n")
	return []byte(sb.String())
}

func BenchmarkParseINI10000(b *testing.B) {
	data := bigINI(10000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		inv, err := ParseINI("big.ini", data)
		if err != nil || len(inv.Hosts()) != 10000 {
			b.Fatal(err)
		}
	}
}

func BenchmarkMatch(b *testing.B) {
	inv, err := ParseINI("big.ini", bigINI(10000))
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range []string{"all", "web042", "prod:&web0*:!web010", "~web0[0-4]", "web001-007.dc1.example.com"} {
		b.Run(p, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := inv.Match(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
