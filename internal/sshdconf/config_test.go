package sshdconf

import (
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or writes it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -run %s -update rewrites it):\n--- got\n%s\n--- want\n%s", p, t.Name(), got, want)
	}
}

// tree reads a recorded configuration tree: testdata/trees/NAME/etc/ssh/…
// becomes /etc/ssh/….
func tree(t *testing.T, name string) map[string][]byte {
	t.Helper()
	root := filepath.Join("testdata", "trees", name)
	files := map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		files["/"+filepath.ToSlash(rel)] = data
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func dump(lines []Line) string {
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "%s:%d %s %q", l.File, l.Line, l.Keyword, l.Args)
		if l.Match != "" {
			fmt.Fprintf(&b, " [%s]", l.Match)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// TestTrees: recorded configuration trees → the lines in sshd's order,
// and what sshd reads before the breakglass drop-in and a dot file.
func TestTrees(t *testing.T) {
	dirs, err := os.ReadDir(filepath.Join("testdata", "trees"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		t.Run(d.Name(), func(t *testing.T) {
			files := tree(t, d.Name())
			var b strings.Builder
			b.WriteString("# Read\n")
			b.WriteString(dump(Read(files)))
			for _, target := range []string{DropInDir + "/00-breakglass.conf", DropInDir + "/.breakglass.conf", DropInDir + "/zz.conf"} {
				included, before := Before(files, target)
				fmt.Fprintf(&b, "# Before %s: included %v\n", target, included)
				b.WriteString(dump(before))
			}
			golden(t, "trees/"+d.Name()+".golden", b.String())
		})
	}
}

// TestEffective: recorded sshd -T outputs → the effective configuration.
func TestEffective(t *testing.T) {
	names, err := filepath.Glob(filepath.Join("testdata", "effective", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	for _, n := range names {
		base := strings.TrimSuffix(filepath.Base(n), ".txt")
		t.Run(base, func(t *testing.T) {
			out, err := os.ReadFile(n)
			if err != nil {
				t.Fatal(err)
			}
			e := ParseEffective(string(out))
			// Who the filters refuse, from two addresses.
			refuses := map[string]string{}
			for _, u := range []struct{ name, groups, ip string }{
				{"admin", "admin ops", "10.0.0.5"}, {"admin", "admin ops", "192.0.2.7"},
				{"bg-ops1", "bg-ops1 ops", "192.0.2.7"}, {"bg-ops1", "bg-ops1", "192.0.2.7"},
				{"bg-old", "bg-old ops", "192.0.2.7"}, {"root", "root", "192.0.2.7"},
			} {
				v, refused := e.Refuses(u.name, strings.Fields(u.groups), u.ip, u.ip)
				k := fmt.Sprintf("%s (%s) from %s", u.name, u.groups, u.ip)
				refuses[k] = "allowed"
				if refused {
					refuses[k] = v.Keyword + ": " + v.Why
				}
			}
			e.Values = nil // the input itself
			j, err := json.MarshalIndent(struct {
				*Effective
				Refuses map[string]string
			}{e, refuses}, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "effective/"+base+".golden", string(j)+"\n")
		})
	}
}

// TestIncludeDotFiles: sshd expands Include with glob(3), where * does
// not match a leading dot. audit's reader (path.Match) read such a file.
func TestIncludeDotFiles(t *testing.T) {
	files := tree(t, "debian")
	for _, l := range Read(files) {
		if strings.HasPrefix(filepath.Base(l.File), ".") {
			t.Errorf("read %s, which sshd's Include glob does not match: %v", l.File, l)
		}
	}
	if ok, _ := Before(files, DropInDir+"/.breakglass.conf"); ok {
		t.Error("a dot file counts as included")
	}
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"/etc/ssh/sshd_config.d/*.conf", "/etc/ssh/sshd_config.d/a.conf", true},
		{"/etc/ssh/sshd_config.d/*.conf", "/etc/ssh/sshd_config.d/.a.conf", false},
		{"/etc/ssh/sshd_config.d/.*.conf", "/etc/ssh/sshd_config.d/.a.conf", true},
		{"/etc/ssh/*/a.conf", "/etc/ssh/.d/a.conf", false},
		{"/etc/ssh/*/a.conf", "/etc/ssh/d/a.conf", true},
		{"/etc/ssh/*", "/etc/ssh/d/a.conf", false},
		{"/etc/ssh/sshd_config.d/[0-4]*.conf", "/etc/ssh/sshd_config.d/10-a.conf", true},
	} {
		if got := GlobMatch(tc.pattern, tc.name); got != tc.want {
			t.Errorf("GlobMatch(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

func TestSplitArgs(t *testing.T) {
	for in, want := range map[string][]string{
		`a b`:                            {"a", "b"},
		`  a	 b  `:                       {"a", "b"},
		`"a b" c`:                        {"a b", "c"},
		`'a "b"' c`:                      {`a "b"`, "c"},
		`a # comment`:                    {"a"},
		`a#b`:                            {"a#b"},
		`"#x" y`:                         {"#x", "y"},
		`a\ b`:                           {"a b"},
		`a\\b \"c`:                       {`a\b`, `"c`},
		`/etc/ssh/keys/%u "%h/.ssh/x y"`: {"/etc/ssh/keys/%u", "%h/.ssh/x y"},
		``:                               nil,
	} {
		got := SplitArgs(in)
		if fmt.Sprint(got) != fmt.Sprint(want) || len(got) != len(want) {
			t.Errorf("SplitArgs(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSources(t *testing.T) {
	lines := Read(tree(t, "debian"))
	tests := []struct {
		kw    string
		value []string
		want  string
	}{
		// Drop-ins are read first, and the first value wins.
		{"permitrootlogin", []string{"prohibit-password"}, "/etc/ssh/sshd_config.d/10-a.conf:2: PermitRootLogin prohibit-password"},
		{"usepam", []string{"yes"}, "/etc/ssh/sshd_config:9: UsePAM yes"},
		// The effective value comes from a Match block.
		{"pubkeyauthentication", []string{"no"}, "/etc/ssh/sshd_config:18: PubkeyAuthentication no (in Match User bob at /etc/ssh/sshd_config:17)"},
		// Every AllowUsers line adds to the list.
		{"allowusers", []string{"admin", "ops", "root"}, "/etc/ssh/sshd_config.d/10-a.conf:3: AllowUsers admin ops; /etc/ssh/sshd_config:15: AllowUsers root"},
		{"strictmodes", []string{"yes"}, ""},
	}
	for _, tc := range tests {
		var got []string
		for _, l := range Sources(lines, tc.kw, tc.value) {
			got = append(got, l.String())
		}
		if g := strings.Join(got, "; "); g != tc.want {
			t.Errorf("Sources(%s %v)\n got %q\nwant %q", tc.kw, tc.value, g, tc.want)
		}
	}
}

// TestIncludeBomb: files that include each other stop at sshd's depth,
// and what is read stays bounded.
func TestIncludeBomb(t *testing.T) {
	files := map[string][]byte{MainConfig: []byte("Include sshd_config sshd_config sshd_config\nPort 22\n")}
	lines := Read(files)
	if len(lines) == 0 || len(lines) > maxLines {
		t.Errorf("%d lines", len(lines))
	}
}
