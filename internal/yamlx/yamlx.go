// Package yamlx decodes YAML nodes strictly: unknown keys are errors, and
// every error names the file, line and column it comes from.
package yamlx

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// PosError is an input error at a position in a file.
type PosError struct {
	File   string
	Line   int
	Column int
	Msg    string
}

func (e *PosError) Error() string {
	switch {
	case e.Line > 0 && e.Column > 0:
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	default:
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
}

// Errorf returns a *PosError at node n of file.
func Errorf(file string, n *yaml.Node, format string, args ...any) error {
	e := &PosError{File: file, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	return e
}

// Decode decodes n into out (a pointer to a struct, map, slice or scalar).
// Mapping keys that match no `yaml` field of a struct are reported as
// errors at the key's position, as are duplicate keys and type mismatches.
func Decode(file string, n *yaml.Node, out any) error {
	v := reflect.ValueOf(out)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return fmt.Errorf("yamlx: decode target must be a non-nil pointer")
	}
	budget := maxNodes
	if err := check(file, n, v.Type().Elem(), &budget); err != nil {
		return err
	}
	if err := n.Decode(out); err != nil {
		return typeError(file, n, err)
	}
	return nil
}

// Resolve follows aliases and unwraps document nodes.
func Resolve(n *yaml.Node) *yaml.Node {
	for n != nil && (n.Kind == yaml.AliasNode || n.Kind == yaml.DocumentNode) {
		if n.Kind == yaml.AliasNode {
			n = n.Alias
		} else if len(n.Content) > 0 {
			n = n.Content[0]
		} else {
			return n
		}
	}
	return n
}

// maxNodes bounds the nodes Decode walks, aliases expanded, so that a
// "billion laughs" document cannot exhaust time or memory.
const maxNodes = 1_000_000

func check(file string, n *yaml.Node, t reflect.Type, budget *int) error {
	if *budget--; *budget < 0 {
		return Errorf(file, n, "document expands to more than %d nodes (YAML aliases nested too deep?)", maxNodes)
	}
	n = Resolve(n)
	if n == nil {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Tag == "!!null" {
		return nil
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil // the type checks itself
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return Errorf(file, n, "expected a mapping, got %s", kindName(n))
		}
		fields := structFields(t)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if seen[k.Value] {
				return Errorf(file, k, "duplicate key %q", k.Value)
			}
			seen[k.Value] = true
			ft, ok := fields[k.Value]
			if !ok {
				return Errorf(file, k, "unknown key %q (known: %s)", k.Value, strings.Join(sortedKeys(fields), ", "))
			}
			if err := check(file, val, ft, budget); err != nil {
				return err
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return Errorf(file, n, "expected a mapping, got %s", kindName(n))
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if seen[k.Value] {
				return Errorf(file, k, "duplicate key %q", k.Value)
			}
			seen[k.Value] = true
			if err := check(file, n.Content[i+1], t.Elem(), budget); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			if t.Elem().Kind() == reflect.String && n.Kind == yaml.ScalarNode {
				return Errorf(file, n, "expected a list, got a scalar (write [%s])", n.Value)
			}
			return Errorf(file, n, "expected a list, got %s", kindName(n))
		}
		for _, c := range n.Content {
			if err := check(file, c, t.Elem(), budget); err != nil {
				return err
			}
		}
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int64, reflect.Uint32, reflect.Float64:
		if n.Kind != yaml.ScalarNode {
			return Errorf(file, n, "expected a %s, got %s", t.Kind(), kindName(n))
		}
	}
	return nil
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

func structFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			for k, v := range structFields(f.Type) {
				m[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = f.Type
	}
	return m
}

func sortedKeys(m map[string]reflect.Type) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// small maps: insertion sort keeps this dependency-free and stable
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// typeError turns yaml.v3's "line N: cannot unmarshal" errors into
// positioned errors for file.
func typeError(file string, n *yaml.Node, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg := te.Errors[0]
		line := 0
		if _, scanErr := fmt.Sscanf(msg, "line %d:", &line); scanErr == nil {
			_, rest, _ := strings.Cut(msg, ": ")
			return &PosError{File: file, Line: line, Msg: rest}
		}
		return Errorf(file, n, "%s", msg)
	}
	return Errorf(file, n, "%v", err)
}

// ParseFile parses data as one YAML document and returns its root node.
// Syntax errors carry file and line.
func ParseFile(file string, data []byte) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		msg := err.Error()
		msg = strings.TrimPrefix(msg, "yaml: ")
		line := 0
		if _, scanErr := fmt.Sscanf(msg, "line %d:", &line); scanErr == nil {
			_, rest, _ := strings.Cut(msg, ": ")
			return nil, &PosError{File: file, Line: line, Column: 1, Msg: rest}
		}
		return nil, &PosError{File: file, Msg: msg}
	}
	return Resolve(&doc), nil
}
