package playbook

import (
	"context"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/breakglass/breakglass/internal/engine"
	"github.com/breakglass/breakglass/internal/yamlx"
	"github.com/breakglass/breakglass/tasks"
)

// probe is a module for these tests only: it records its decoded args.
type probe struct {
	Name  string   `yaml:"name"`
	Users []string `yaml:"users"`
	Port  int      `yaml:"port"`
}

func (*probe) Queries() []engine.Query { return nil }

func (p *probe) Run(context.Context, engine.Runner, *engine.Env) (*engine.Result, error) {
	return &engine.Result{}, nil
}

func init() {
	tasks.Register("test_probe", func(file string, n *yaml.Node) (tasks.Module, error) {
		p := &probe{}
		if err := yamlx.Decode(file, n, p); err != nil {
			return nil, err
		}
		if strings.ContainsAny(p.Name, ";$") {
			return nil, yamlx.Errorf(file, n, "bad name %q", p.Name)
		}
		return p, nil
	})
}

func TestParseOK(t *testing.T) {
	src := `
- name: one
  hosts: web:db
  become: true
  vars:
    who: bg-ops1
    everyone: [a, b]
    dir: keys
  tasks:
    - name: a task
      test_probe: {name: "{{ who }}", users: "{{ everyone }}", port: 22}
    - test_probe: {name: "x-{{ who }}"}
- hosts: [web, db]
  tasks: []
`
	pb, err := Parse("pb.yml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(pb.Plays) != 2 || pb.Plays[1].Hosts != "web:db" || !pb.Plays[0].Become {
		t.Fatalf("plays: %+v", pb.Plays)
	}
	m, err := Build(pb.Plays[0].Tasks[0], pb.Plays[0].Vars, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	p := m.(*probe)
	if p.Name != "bg-ops1" || strings.Join(p.Users, ",") != "a,b" || p.Port != 22 {
		t.Fatalf("decoded %+v", p)
	}
	m, err = Build(pb.Plays[0].Tasks[1], pb.Plays[0].Vars, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if m.(*probe).Name != "x-bg-ops1" {
		t.Fatalf("interpolated %+v", m)
	}
}

func TestHostVarsAndPrecedence(t *testing.T) {
	src := `
- hosts: all
  vars: {who: from-play}
  tasks:
    - test_probe: {name: "{{ who }}", port: "{{ p }}"}
`
	pb, err := Parse("pb.yml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Build(pb.Plays[0].Tasks[0], pb.Plays[0].Vars, map[string]any{"who": "from-host", "p": 2222}, false)
	if err != nil {
		t.Fatal(err)
	}
	if p := m.(*probe); p.Name != "from-play" || p.Port != 2222 {
		t.Fatalf("got %+v", p)
	}
	if _, err := Build(pb.Plays[0].Tasks[0], pb.Plays[0].Vars, nil, false); err == nil || !strings.Contains(err.Error(), `pb.yml:5:`) || !strings.Contains(err.Error(), `undefined variable "p"`) {
		t.Fatalf("want positioned undefined variable error, got %v", err)
	}
}

func TestErrorsCarryPositions(t *testing.T) {
	cases := []struct {
		name, src string
		want      []string
	}{
		{"unknown play key", "- hosts: all\n  taks: []\n", []string{`pb.yml:2:3: unknown play key "taks"`}},
		{"unknown module", "- hosts: all\n  tasks:\n    - nope: {}\n", []string{`pb.yml:3:7: unknown module "nope"`}},
		{"unknown arg", "- hosts: all\n  tasks:\n    - test_probe: {name: a, colour: red}\n", []string{`pb.yml:3:29: unknown key "colour"`}},
		{"two modules", "- hosts: all\n  tasks:\n    - test_probe: {}\n      command: {}\n", []string{`pb.yml:4:7:`}},
		{"no module", "- hosts: all\n  tasks:\n    - name: x\n", []string{`pb.yml:3:7: task names no module`}},
		{"syntax", "- hosts: all\n  tasks: [\n", []string{`pb.yml:`}},
		{"not a list", "hosts: all\n", []string{`pb.yml:1:1: a playbook is a list`}},
		{"no hosts", "- tasks: []\n", []string{`pb.yml:1:3: play has no hosts`}},
		{"expression", "- hosts: all\n  tasks:\n    - test_probe: {name: \"{{ a | upper }}\"}\n", []string{`pb.yml:3:26: only {{ name }} references`}},
		{"type", "- hosts: all\n  tasks:\n    - test_probe: {port: many}\n", []string{`pb.yml:3`, `cannot unmarshal`}},
		{"all errors together", "- hosts: all\n  tasks:\n    - nope: {}\n    - test_probe: {bad: 1}\n- hosts: all\n  bogus: 1\n",
			[]string{`pb.yml:3:7: unknown module "nope"`, `pb.yml:4:20: unknown key "bad"`, `pb.yml:6:3: unknown play key "bogus"`}},
		{"module validation", "- hosts: all\n  tasks:\n    - test_probe: {name: \"a;b\"}\n", []string{`pb.yml:3:19: bad name`}},
		{"self reference", "- hosts: all\n  vars: {a: \"{{ a }}\"}\n  tasks:\n    - test_probe: {name: \"{{ a }}\"}\n", []string{`nest deeper`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("pb.yml", []byte(c.src))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("- hosts: all\n  tasks:\n    - test_probe: {name: a}\n"))
	f.Add([]byte("- hosts: all\n  vars: {a: &x [1, *x]}\n"))
	f.Add([]byte("- hosts: all\n  vars: {a: \"{{ b }}\", b: \"{{ a }}\"}\n  tasks:\n    - test_probe: {name: \"{{ a }}\"}\n"))
	f.Add([]byte("\x00\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pb, err := Parse("fuzz.yml", data)
		if err == nil && pb == nil {
			t.Fatal("nil playbook without error")
		}
	})
}
