// Package playbook loads breakglass playbooks: an Ansible-style YAML list of
// plays, each with hosts, vars and tasks. Every input error carries
// file:line:column, and all of them are reported together.
package playbook

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/hashicorp/go-multierror"
	"gopkg.in/yaml.v3"

	"github.com/breakglass/breakglass/internal/yamlx"
	"github.com/breakglass/breakglass/tasks"
)

// MaxFileSize bounds what is read as a playbook.
const MaxFileSize = 16 << 20

// Playbook is a loaded playbook file.
type Playbook struct {
	File  string
	Dir   string
	Plays []*Play
}

// Play is one play: which hosts, as whom, with which vars and tasks.
type Play struct {
	Name   string
	Hosts  string
	Become bool
	Vars   map[string]*yaml.Node
	Tasks  []*Task
	Line   int
	Column int
}

// Task is one task of a play: a module and its arguments, still as YAML so
// that variables can be substituted per host.
type Task struct {
	Name   string
	Module string
	Args   *yaml.Node
	File   string
	Line   int
	Column int
}

// Pos is the task's position as file:line:column.
func (t *Task) Pos() string { return fmt.Sprintf("%s:%d:%d", t.File, t.Line, t.Column) }

var playKeys = map[string]bool{"name": true, "hosts": true, "become": true, "vars": true, "tasks": true, "gather_facts": true}

// Load reads and checks a playbook: syntax, known keys, known modules, and
// each task's arguments decoded once with the play's vars (host vars are
// applied again per host by Build).
func Load(file string) (*Playbook, error) {
	data, err := readLimited(file)
	if err != nil {
		return nil, err
	}
	return Parse(file, data)
}

func readLimited(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("read playbook: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read playbook: %w", err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("read playbook %s: is a directory", file)
	}
	if st.Size() > MaxFileSize {
		return nil, fmt.Errorf("read playbook %s: larger than %d MiB", file, MaxFileSize>>20)
	}
	data := make([]byte, st.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("read playbook %s: %w", file, err)
	}
	return data, nil
}

// Parse parses playbook text; file names it in errors.
func Parse(file string, data []byte) (*Playbook, error) {
	pb := &Playbook{File: file, Dir: filepath.Dir(file)}
	root, err := yamlx.ParseFile(file, data)
	if err != nil {
		return nil, err
	}
	if root == nil || root.Kind == 0 || (root.Kind == yaml.ScalarNode && root.Tag == "!!null") {
		return nil, &yamlx.PosError{File: file, Line: 1, Column: 1, Msg: "empty playbook: want a list of plays"}
	}
	if root.Kind != yaml.SequenceNode {
		return nil, yamlx.Errorf(file, root, "a playbook is a list of plays (- hosts: …)")
	}
	var errs *multierror.Error
	for _, pn := range root.Content {
		play, err := parsePlay(file, yamlx.Resolve(pn))
		if err != nil {
			errs = multierror.Append(errs, flatten(err)...)
			continue
		}
		pb.Plays = append(pb.Plays, play)
	}
	if err := errs.ErrorOrNil(); err != nil {
		return nil, tidy(errs)
	}
	return pb, nil
}

func parsePlay(file string, n *yaml.Node) (*Play, error) {
	if n.Kind != yaml.MappingNode {
		return nil, yamlx.Errorf(file, n, "a play is a mapping with hosts: and tasks:")
	}
	p := &Play{Line: n.Line, Column: n.Column, Become: false, Vars: map[string]*yaml.Node{}}
	var errs *multierror.Error
	seen := map[string]bool{}
	hasHosts := false
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], yamlx.Resolve(n.Content[i+1])
		if seen[k.Value] {
			errs = multierror.Append(errs, yamlx.Errorf(file, k, "duplicate key %q", k.Value))
			continue
		}
		seen[k.Value] = true
		if !playKeys[k.Value] {
			errs = multierror.Append(errs, yamlx.Errorf(file, k, "unknown play key %q (known: become, gather_facts, hosts, name, tasks, vars)", k.Value))
			continue
		}
		switch k.Value {
		case "name":
			if err := yamlx.Decode(file, v, &p.Name); err != nil {
				errs = multierror.Append(errs, err)
			}
		case "hosts":
			hasHosts = true
			if v.Kind == yaml.SequenceNode {
				var list []string
				if err := yamlx.Decode(file, v, &list); err != nil {
					errs = multierror.Append(errs, err)
				}
				p.Hosts = strings.Join(list, ":")
			} else if err := yamlx.Decode(file, v, &p.Hosts); err != nil {
				errs = multierror.Append(errs, err)
			}
			if strings.TrimSpace(p.Hosts) == "" {
				errs = multierror.Append(errs, yamlx.Errorf(file, v, "hosts: is empty"))
			}
		case "become":
			if err := yamlx.Decode(file, v, &p.Become); err != nil {
				errs = multierror.Append(errs, err)
			}
		case "gather_facts":
			var ignored bool
			if err := yamlx.Decode(file, v, &ignored); err != nil {
				errs = multierror.Append(errs, err)
			}
		case "vars":
			if v.Kind != yaml.MappingNode {
				errs = multierror.Append(errs, yamlx.Errorf(file, v, "vars: must be a mapping"))
				continue
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				name := v.Content[j]
				if !varName.MatchString(name.Value) {
					errs = multierror.Append(errs, yamlx.Errorf(file, name, "invalid variable name %q", name.Value))
					continue
				}
				if _, dup := p.Vars[name.Value]; dup {
					errs = multierror.Append(errs, yamlx.Errorf(file, name, "duplicate variable %q", name.Value))
					continue
				}
				p.Vars[name.Value] = v.Content[j+1]
			}
		case "tasks":
			if v.Tag == "!!null" {
				continue
			}
			if v.Kind != yaml.SequenceNode {
				errs = multierror.Append(errs, yamlx.Errorf(file, v, "tasks: must be a list"))
				continue
			}
			for _, tn := range v.Content {
				t, err := parseTask(file, yamlx.Resolve(tn))
				if err != nil {
					errs = multierror.Append(errs, flatten(err)...)
					continue
				}
				p.Tasks = append(p.Tasks, t)
			}
		}
	}
	if !hasHosts {
		errs = multierror.Append(errs, yamlx.Errorf(file, n, "play has no hosts:"))
	}
	// Decode every task once with the play's vars, so that bad arguments
	// are found before any host is contacted. Values that come from
	// inventory vars are checked again per host by Build.
	for _, t := range p.Tasks {
		if _, err := Build(t, p.Vars, nil, true); err != nil {
			errs = multierror.Append(errs, flatten(err)...)
		}
	}
	if errs.ErrorOrNil() != nil {
		return nil, errs
	}
	return p, nil
}

var varName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func parseTask(file string, n *yaml.Node) (*Task, error) {
	if n.Kind != yaml.MappingNode {
		return nil, yamlx.Errorf(file, n, "a task is a mapping: - name: …  MODULE: {…}")
	}
	t := &Task{File: file, Line: n.Line, Column: n.Column}
	var errs *multierror.Error
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case k.Value == "name":
			if err := yamlx.Decode(file, v, &t.Name); err != nil {
				errs = multierror.Append(errs, err)
			}
		case t.Module != "":
			if _, known := tasks.Lookup(k.Value); known {
				errs = multierror.Append(errs, yamlx.Errorf(file, k, "task has two modules, %q and %q: one task, one module", t.Module, k.Value))
			} else {
				errs = multierror.Append(errs, yamlx.Errorf(file, k, "unknown task key %q", k.Value))
			}
		default:
			if _, known := tasks.Lookup(k.Value); !known {
				errs = multierror.Append(errs, yamlx.Errorf(file, k, "unknown module %q (known: %s)", k.Value, strings.Join(tasks.Names(), ", ")))
				continue
			}
			t.Module, t.Args = k.Value, v
			t.Line, t.Column = k.Line, k.Column
		}
	}
	if t.Module == "" && errs.ErrorOrNil() == nil {
		errs = multierror.Append(errs, yamlx.Errorf(file, n, "task names no module (known: %s)", strings.Join(tasks.Names(), ", ")))
	}
	if err := errs.ErrorOrNil(); err != nil {
		return nil, err
	}
	return t, nil
}

// Build substitutes variables into a task's arguments and decodes them into
// a module. Play vars win over host vars (as in Ansible). With lenient set,
// a variable that is not a play var is left for the per-host build.
func Build(t *Task, playVars map[string]*yaml.Node, hostVars map[string]any, lenient bool) (tasks.Module, error) {
	s := &subst{file: t.File, play: playVars, host: hostVars, lenient: lenient}
	args := s.node(t.Args, 0)
	if s.err != nil {
		return nil, s.err
	}
	if s.deferred {
		return nil, nil
	}
	f, _ := tasks.Lookup(t.Module)
	if args == nil {
		args = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: t.Line, Column: t.Column}
	}
	m, err := f(t.File, args)
	if err != nil {
		return nil, err
	}
	return m, nil
}

var (
	wholeVar = regexp.MustCompile(`^\s*\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}\s*$`)
	anyVar   = regexp.MustCompile(`\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)
	badTmpl  = regexp.MustCompile(`\{\{|\{%|\}\}`)
)

const maxDepth = 16

// maxNodes bounds the nodes one task's substitution may produce, so that
// YAML aliases nested into a "billion laughs" cannot exhaust memory.
const maxNodes = 200_000

type subst struct {
	file     string
	play     map[string]*yaml.Node
	host     map[string]any
	lenient  bool
	deferred bool
	err      error
	nodes    int
}

func (s *subst) fail(n *yaml.Node, format string, args ...any) *yaml.Node {
	if s.err == nil {
		s.err = yamlx.Errorf(s.file, n, format, args...)
	}
	return n
}

// node returns a copy of n with {{ var }} references replaced. Positions
// are kept, so that errors about substituted values still point at the
// playbook.
func (s *subst) node(n *yaml.Node, depth int) *yaml.Node {
	if n == nil || s.err != nil {
		return n
	}
	if depth > maxDepth {
		return s.fail(n, "variables nest deeper than %d levels (a variable refers to itself?)", maxDepth)
	}
	s.nodes++
	if s.nodes > maxNodes {
		return s.fail(n, "task arguments expand to more than %d YAML nodes (aliases nested too deep?)", maxNodes)
	}
	n = yamlx.Resolve(n)
	c := *n
	switch n.Kind {
	case yaml.MappingNode, yaml.SequenceNode:
		c.Content = make([]*yaml.Node, len(n.Content))
		for i, ch := range n.Content {
			c.Content[i] = s.node(ch, depth)
		}
		return &c
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "{{") && !strings.Contains(n.Value, "}}") && !strings.Contains(n.Value, "{%") {
			return &c
		}
		if m := wholeVar.FindStringSubmatch(n.Value); m != nil {
			v := s.lookup(n, m[1], depth)
			if v == nil {
				return &c
			}
			out := *v
			out.Line, out.Column = n.Line, n.Column
			return &out
		}
		// Interpolation inside a string: every reference must be a scalar.
		var rest string
		out := anyVar.ReplaceAllStringFunc(n.Value, func(ref string) string {
			name := anyVar.FindStringSubmatch(ref)[1]
			v := s.lookup(n, name, depth)
			if v == nil {
				return ref
			}
			if v.Kind != yaml.ScalarNode {
				s.fail(n, "variable %q is not a plain value and cannot be part of a string", name)
				return ref
			}
			return v.Value
		})
		rest = anyVar.ReplaceAllString(n.Value, "")
		if badTmpl.MatchString(rest) && s.err == nil && !s.deferred {
			return s.fail(n, "only {{ name }} references are supported (no expressions or filters): %q", n.Value)
		}
		c.Value = out
		c.Tag = "!!str"
		c.Style = 0
		return &c
	}
	return &c
}

// lookup finds a variable, play vars first, and substitutes inside it.
func (s *subst) lookup(at *yaml.Node, name string, depth int) *yaml.Node {
	if v, ok := s.play[name]; ok {
		return s.node(v, depth+1)
	}
	if v, ok := s.host[name]; ok {
		var n yaml.Node
		if err := n.Encode(v); err != nil {
			s.fail(at, "variable %q: %v", name, err)
			return nil
		}
		return s.node(&n, depth+1)
	}
	if s.lenient {
		s.deferred = true
		return nil
	}
	s.fail(at, "undefined variable %q", name)
	return nil
}

// flatten spreads a multierror into its parts so errors are not nested.
func flatten(err error) []error {
	var me *multierror.Error
	if errors.As(err, &me) {
		return me.Errors
	}
	return []error{err}
}

// tidy formats a multierror as one error per line.
func tidy(me *multierror.Error) error {
	me.ErrorFormat = func(errs []error) string {
		lines := make([]string, len(errs))
		for i, e := range errs {
			lines[i] = e.Error()
		}
		return strings.Join(lines, "\n")
	}
	return me
}
