package inventory

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-multierror"

	"github.com/breakglass/breakglass/internal/yamlx"
)

// TestPyValue pins INI values to what Ansible's ast.literal_eval gives.
func TestPyValue(t *testing.T) {
	tests := []struct {
		in   string
		want any
	}{
		{"22", 22},
		{"-5", -5},
		{"+7", 7},
		{"1_000", 1000},
		{"0x1F", 31},
		{"0o17", 15},
		{"0b101", 5},
		{"0", 0},
		{"00", 0},
		{"0755", "0755"}, // Python 3 has no such int: stays a string
		{"1.5", 1.5},
		{".5", 0.5},
		{"1e3", 1000.0},
		{"True", true},
		{"False", false},
		{"None", nil},
		{"true", "true"}, // not Python: a string
		{"yes", "yes"},
		{"'quoted'", "quoted"},
		{`"double"`, "double"},
		{`'a' "b"`, "ab"},
		{`'it''s'`, "its"},
		{`"tab\there"`, "tab\there"},
		{`r"raw\n"`, `raw\n`},
		{`u'\u00e9'`, "é"},
		{`"\x41\101"`, "AA"},
		{`'unknown \q escape'`, `unknown \q escape`},
		{"[1, 'two', [3]]", []any{1, "two", []any{3}}},
		{"(1, 2)", []any{1, 2}},
		{"(1,)", []any{1}},
		{"()", []any{}},
		{"(5)", 5},
		{"1, 2", []any{1, 2}},
		{"{'a': 1, 'b': [True]}", map[string]any{"a": 1, "b": []any{true}}},
		{"{1: 'x'}", map[string]any{"1": "x"}},
		{"{}", map[string]any{}},
		{"{1, 2}", []any{1, 2}},
		{"8080 # port", 8080},
		{"ntp.example.com # comment", "ntp.example.com # comment"}, // Ansible keeps it all
		{"10.0.0.1", "10.0.0.1"},
		{"1.2.3", "1.2.3"},
		{"-J bastion", "-J bastion"},
		{"", ""},
		{"'unterminated", "'unterminated"},
		{"[1, 2", "[1, 2"},
		{"99999999999999999999", "99999999999999999999"}, // too big for int: kept
		{"1e999", "1e999"},
		{"1j", "1j"},
		{"-True", "-True"},
		{"--5", "--5"},
		{"f'x'", "f'x'"},
		{"b'x' 'y'", "b'x' 'y'"},
		{"{[1]: 2}", "{[1]: 2}"},
		{strings.Repeat("[", 200) + strings.Repeat("]", 200), strings.Repeat("[", 200) + strings.Repeat("]", 200)},
	}
	for _, tt := range tests {
		if got := parsePyValue(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parsePyValue(%q) = %#v, want %#v", tt.in, got, tt.want)
		}
	}
}

func TestShlexSplit(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  error
	}{
		{"a b  c", []string{"a", "b", "c"}, nil},
		{`host x="a b" y='c d'`, []string{"host", "x=a b", "y=c d"}, nil},
		{`host x="'q'"`, []string{"host", "x='q'"}, nil},
		{`host # comment`, []string{"host"}, nil},
		{`host x=a#b`, []string{"host", "x=a"}, nil},
		{`host x="a#b"`, []string{"host", "x=a#b"}, nil},
		{`a\ b`, []string{"a b"}, nil},
		{`"a\"b" "c\d"`, []string{`a"b`, `c\d`}, nil},
		{`x=""`, []string{"x="}, nil},
		{`""`, []string{""}, nil},
		{`'a`, nil, errNoClosingQuote},
		{`a\`, nil, errNoEscaped},
	}
	for _, tt := range tests {
		got, err := shlexSplit(tt.in)
		if !errors.Is(err, tt.err) || !slices.Equal(got, tt.want) {
			t.Errorf("shlexSplit(%q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestHostPatterns(t *testing.T) {
	tests := []struct {
		in    string
		names []string
		port  int
		err   string
	}{
		{in: "web01", names: []string{"web01"}},
		{in: "web01:2222", names: []string{"web01"}, port: 2222},
		{in: "web[01:03]", names: []string{"web01", "web02", "web03"}},
		{in: "web[1:3].example.com:22", names: []string{"web1.example.com", "web2.example.com", "web3.example.com"}, port: 22},
		{in: "web[8:11]", names: []string{"web8", "web9", "web10", "web11"}},
		{in: "web[001:003]", names: []string{"web001", "web002", "web003"}},
		{in: "db-[a:c]", names: []string{"db-a", "db-b", "db-c"}},
		{in: "n[1:10:4]", names: []string{"n1", "n5", "n9"}},
		{in: "n[:2]", names: []string{"n0", "n1", "n2"}},
		{in: "r[1:2]-[a:b]", names: []string{"r1-a", "r1-b", "r2-a", "r2-b"}},
		{in: "10.0.0.[1:2]", names: []string{"10.0.0.1", "10.0.0.2"}},
		{in: "10.0.0.1:2200", names: []string{"10.0.0.1"}, port: 2200},
		{in: "2001:db8::1", names: []string{"2001:db8::1"}},
		{in: "[2001:db8::1]:2222", names: []string{"2001:db8::1"}, port: 2222},
		{in: "[2001:db8::1]", names: []string{"2001:db8::1"}},
		{in: "host:", err: "trailing ':'"},
		{in: "host:ssh", err: "port"},
		{in: "host:0", err: "port"},
		{in: "host:70000", err: "port"},
		{in: "a:b:22", err: "too many ':'"},
		{in: "web[01:3]", err: "same number of digits"},
		{in: "web[3:1]", err: "begin is after end"},
		{in: "web[1:]", err: "must specify an end"},
		{in: "web[1:5:0]", err: "step"},
		{in: "web[1-5]", err: "must be [begin:end]"},
		{in: "web[1:x]", err: "numbers or single letters"},
		{in: "web[1:3", err: "unbalanced '['"},
		{in: "web]", err: "unbalanced ']'"},
		{in: "web[1:100001]", err: "more than 100000 hosts"},
		{in: "web[1:1000][1:1000]", err: "more than 100000 hosts"},
		{in: "web[1:999999999]", err: "more than 100000 hosts"},
		{in: "-oProxyCommand=x", err: "invalid host name"},
		{in: "a;reboot", err: "invalid host name"},
		{in: "$(id)", err: "invalid host name"},
		{in: "a`id`", err: "invalid host name"},
		{in: "a'b", err: "invalid host name"},
		{in: "a\"b", err: "invalid host name"},
		{in: "a\rb", err: "invalid host name"},
		{in: "a\x00b", err: "invalid host name"},
		{in: "a/b", err: "invalid host name"},
		{in: "..", err: "invalid host name"},
		{in: "\xff", err: "not valid UTF-8"},
		{in: "fe80::1%eth0;x", err: "invalid host name"},
	}
	for _, tt := range tests {
		names, port, err := parseHostPattern(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseHostPattern(%q): error %v, want one containing %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || !slices.Equal(names, tt.names) || port != tt.port {
			t.Errorf("parseHostPattern(%q) = %q, %d, %v; want %q, %d", tt.in, names, port, err, tt.names, tt.port)
		}
	}
}

// errorLines returns the message of every error in err, one per input error.
func errorLines(t *testing.T, err error) []string {
	t.Helper()
	var me *multierror.Error
	if !errors.As(err, &me) {
		t.Fatalf("error %v (%T) is not a *multierror.Error", err, err)
	}
	var out []string
	for _, e := range me.Errors {
		out = append(out, e.Error())
	}
	return out
}

func TestINIErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // every error, in order, as file:line: message prefix
	}{
		{"space in section", "[web servers]\nh\n", []string{"inv.ini:1: invalid section [web servers]"}},
		{"unknown section type", "[web:varz]\n", []string{`inv.ini:1: section [web:varz] has unknown type "varz"`}},
		{"bad group name", "[-web]\n", []string{`inv.ini:1: section [-web]: invalid group name "-web"`}},
		{"bare word after host", "[web]\nh1 oops\n", []string{`inv.ini:2: expected key=value after host h1, got "oops"`}},
		{"unterminated quote", "[web]\nh1 a='x\n", []string{`inv.ini:2: host line "h1 a='x": no closing quotation`}},
		{"shell metacharacters", "[web]\nh1;reboot\n", []string{`inv.ini:2: invalid host name "h1;reboot"`}},
		{"huge range", "[web]\nw[1:200000]\n", []string{`inv.ini:2: host "w[1:200000]": range stands for more than 100000 hosts`}},
		{"vars line without =", "[web]\nh\n[web:vars]\nnoequals\n", []string{`inv.ini:4: expected key=value in [web:vars], got "noequals"`}},
		{"vars for undefined group", "[ghost:vars]\nx=1\n", []string{`inv.ini:1: section [ghost:vars] is for group "ghost", which is not defined`}},
		{"undefined child", "[p:children]\nmissing\n", []string{`inv.ini:2: section [p:children] names group "missing", which is not defined`}},
		{"bad child", "[p:children]\nbad;child\n", []string{`inv.ini:2: invalid group name "bad;child"`}},
		{"NUL byte", "[web]\nh\x00x\n", []string{"inv.ini:2: line contains a NUL byte"}},
		{"invalid UTF-8", "# caf\xe9 is fine in a comment\n[web]\nh\xe9\n", []string{"inv.ini:3: line is not valid UTF-8"}},
		{"empty var name", "[web]\nh =1\n", []string{`inv.ini:2: empty variable name in "=1"`}},
		{"cycle", "[a:children]\nb\n[b:children]\na\n", []string{"inv.ini:2: groups form a cycle: a → b → a"}},
		{"own child", "[a:children]\na\n", []string{`inv.ini:2: group "a" cannot be its own child`}},
		{"YAML fed to INI", "[web]\n---\n", []string{`inv.ini:2: invalid host name "---"`}},
		{
			"every error is reported",
			"[web]\nok1\nbad;1\n[db servers]\nx\n[db]\nok2 k\nbad|2\n",
			[]string{`inv.ini:3: invalid host name "bad;1"`, "inv.ini:4: invalid section [db servers]",
				`inv.ini:7: expected key=value after host ok2, got "k"`, `inv.ini:8: invalid host name "bad|2"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := ParseINI("inv.ini", []byte(tt.in))
			if err == nil {
				t.Fatalf("no error; hosts %q", hostNames(inv.Hosts()))
			}
			got := errorLines(t, err)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("error %d:\n got %s\nwant %s…", i, got[i], tt.want[i])
				}
			}
			var pe *yamlx.PosError
			if !errors.As(err, &pe) || pe.File != "inv.ini" || pe.Line == 0 {
				t.Errorf("errors.As(*yamlx.PosError) = %+v", pe)
			}
		})
	}
}

func TestINIErrorsAreCapped(t *testing.T) {
	var sb strings.Builder
	for i := 0; i < 1000; i++ {
		sb.WriteString("bad;host\n")
	}
	_, err := ParseINI("inv.ini", []byte(sb.String()))
	lines := errorLines(t, err)
	if len(lines) != maxErrors+1 || lines[maxErrors] != fmt.Sprintf("and %d more errors", 1000-maxErrors) {
		t.Errorf("got %d errors, last %q", len(lines), lines[len(lines)-1])
	}
}

func TestINIForms(t *testing.T) {
	in := "\xef\xbb\xbf; BOM, CRLF and comments\r\n" +
		"[web]\r\n" +
		"  w1   ansible_host=10.0.0.1   # trailing comment\r\n" +
		"w2 ansible_ssh_common_args='-o ProxyJump=bastion -o Port=2222'\r\n" +
		"[web:children]   # children may carry a comment\n" +
		"canary   # this too\n" +
		"[canary]\r" +
		"c1\n" +
		"[web:vars]\n" +
		"  key  =  value with spaces  \n" +
		"empty=\n" +
		"eq=a=b\n"
	inv, err := ParseINI("inv.ini", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if got := hostNames(inv.Hosts()); !slices.Equal(got, []string{"w1", "w2", "c1"}) {
		t.Errorf("hosts %q", got)
	}
	w2 := mustHost(t, inv, "w2")
	if got := w2.Vars["ansible_ssh_common_args"]; got != "-o ProxyJump=bastion -o Port=2222" {
		t.Errorf("ssh args %q", got)
	}
	c1 := mustHost(t, inv, "c1")
	want := map[string]any{"key": "value with spaces", "empty": "", "eq": "a=b"}
	if !reflect.DeepEqual(c1.Vars, want) || !slices.Equal(c1.Groups, []string{"all", "canary", "web"}) {
		t.Errorf("c1: %v %v", c1.Vars, c1.Groups)
	}
}
