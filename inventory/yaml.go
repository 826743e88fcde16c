package inventory

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/breakglass/breakglass/internal/yamlx"
)

// ParseYAML parses an Ansible YAML inventory: top-level keys are groups
// (usually just all), each a mapping of hosts, vars and children, nested
// to any depth. file names the source in errors. The result has no
// group_vars/host_vars; Load adds those.
func ParseYAML(file string, data []byte) (*Inventory, error) {
	b := newBuilder()
	b.parseYAML(file, data)
	return b.finish()
}

func (b *builder) parseYAML(file string, data []byte) {
	root, ok := b.parseYAMLFile(file, data)
	if !ok || root == nil {
		return
	}
	w := newWalker(b, file, len(data), false)
	w.inventory(root)
}

// parseYAMLFile parses data as YAML. It returns a nil node for an empty
// document, which is an empty inventory (Ansible falls back to its INI
// parser for an empty file and finds nothing).
func (b *builder) parseYAMLFile(file string, data []byte) (n *yaml.Node, ok bool) {
	defer func() {
		// yaml.v3 has panicked on hostile input before; a bad file must be
		// an error, never a crash.
		if r := recover(); r != nil {
			b.fail(pos{file: file}.errorf("invalid YAML: %v", r))
			n, ok = nil, false
		}
	}()
	root, err := yamlx.ParseFile(file, data)
	if err != nil {
		b.fail(err)
		return nil, false
	}
	if root == nil || root.Kind == yaml.DocumentNode || root.Kind == 0 ||
		(root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null") {
		return nil, true
	}
	return root, true
}

// yamlWalker walks one file's node tree. Aliases are followed, so a file
// can describe far more nodes than it holds; budget bounds the walk.
// Without aliases a walk visits each node a few times at most, and a node
// takes at least a byte, so a budget that grows with the file's size never
// stops a real inventory, however large, while an alias bomb — a small
// file — is stopped after maxYAMLNodes.
type yamlWalker struct {
	b      *builder
	file   string
	budget int
	broke  bool // budget exhausted and reported
	// json: the tree came from ParseJSON; messages say "object" for mapping.
	json bool
	// active holds the group definitions being walked, to catch a group
	// that contains itself through an alias.
	active map[*yaml.Node]bool
}

var errBudget = errors.New("too many YAML nodes (alias expansion?)")

func newWalker(b *builder, file string, size int, json bool) *yamlWalker {
	return &yamlWalker{b: b, file: file, budget: maxYAMLNodes + 4*size, json: json}
}

func (w *yamlWalker) at(n *yaml.Node) pos { return pos{file: w.file, line: n.Line, col: n.Column} }

func (w *yamlWalker) errorf(n *yaml.Node, format string, args ...any) error {
	return w.at(n).errorf(format, args...)
}

// fail reports err; once the node budget is spent, only the first error
// is reported, since every later one follows from it.
func (w *yamlWalker) fail(err error) {
	if w.budget < 0 {
		if w.broke {
			return
		}
		w.broke = true
	}
	w.b.fail(err)
}

// resolve follows aliases, charging the budget for each node visited.
func (w *yamlWalker) resolve(n *yaml.Node) (*yaml.Node, error) {
	orig := n
	for hops := 0; n != nil && n.Kind == yaml.AliasNode; hops++ {
		if hops > maxNesting {
			return nil, w.errorf(orig, "alias chain too long")
		}
		n = n.Alias
	}
	if n == nil {
		return nil, w.errorf(orig, "alias to nothing")
	}
	w.budget--
	if w.budget < 0 {
		return nil, w.errorf(orig, "%v", errBudget)
	}
	return n, nil
}

func (w *yamlWalker) mappingWord() string {
	if w.json {
		return "an object"
	}
	return "a mapping"
}

func (w *yamlWalker) kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return w.mappingWord()
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return "null"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

type pair struct{ k, v *yaml.Node }

// pairs returns the key/value pairs of mapping n (already resolved), with
// YAML merge keys (<<: *anchor) expanded below the explicit keys. Keys must
// be scalars and unique.
func (w *yamlWalker) pairs(n *yaml.Node, depth int) ([]pair, error) {
	if depth > maxNesting {
		return nil, w.errorf(n, "nesting deeper than %d", maxNesting)
	}
	var out, merged []pair
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, err := w.resolve(n.Content[i])
		if err != nil {
			return nil, err
		}
		if k.Kind != yaml.ScalarNode {
			return nil, w.errorf(k, "a key must be a plain value, not %s", w.kindName(k))
		}
		if k.ShortTag() == "!!merge" {
			v, err := w.resolve(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			srcs := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				srcs = srcs[:0]
				for _, c := range v.Content {
					c, err := w.resolve(c)
					if err != nil {
						return nil, err
					}
					srcs = append(srcs, c)
				}
			}
			for _, s := range srcs {
				if s.Kind != yaml.MappingNode {
					return nil, w.errorf(s, "a merge key (<<) needs a mapping, not %s", w.kindName(s))
				}
				ps, err := w.pairs(s, depth+1)
				if err != nil {
					return nil, err
				}
				merged = append(merged, ps...)
			}
			continue
		}
		if seen[k.Value] {
			return nil, w.errorf(k, "duplicate key %q", k.Value)
		}
		seen[k.Value] = true
		out = append(out, pair{k, n.Content[i+1]})
	}
	for _, p := range merged {
		if !seen[p.k.Value] {
			seen[p.k.Value] = true
			out = append(out, p)
		}
	}
	return out, nil
}

// errVaulted marks an Ansible Vault value, which breakglass cannot decrypt.
var errVaulted = errors.New("vault-encrypted value")

// value converts a node to string, int, bool, float64, []any,
// map[string]any or nil.
func (w *yamlWalker) value(n *yaml.Node, depth int) (any, error) {
	if depth > maxNesting {
		return nil, w.errorf(n, "nesting deeper than %d", maxNesting)
	}
	n, err := w.resolve(n)
	if err != nil {
		return nil, err
	}
	switch n.Kind {
	case yaml.ScalarNode:
		return w.scalar(n)
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := w.value(c, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.MappingNode:
		ps, err := w.pairs(n, depth)
		if err != nil {
			return nil, err
		}
		out := make(map[string]any, len(ps))
		for _, p := range ps {
			v, err := w.value(p.v, depth+1)
			if err != nil {
				return nil, err
			}
			out[p.k.Value] = v
		}
		return out, nil
	}
	return nil, w.errorf(n, "unexpected YAML node")
}

func (w *yamlWalker) scalar(n *yaml.Node) (any, error) {
	switch tag := n.ShortTag(); tag {
	case "!!null":
		return nil, nil
	case "!!str":
		// Ansible reads YAML 1.1, where an unquoted yes/no/on/off is a bool.
		if n.Style&(yaml.TaggedStyle|yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
			switch n.Value {
			case "yes", "Yes", "YES", "on", "On", "ON":
				return true, nil
			case "no", "No", "NO", "off", "Off", "OFF":
				return false, nil
			}
		}
		return n.Value, nil
	case "!!bool", "!!int", "!!float":
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, w.errorf(n, "invalid %s %q", strings.TrimPrefix(tag, "!!"), n.Value)
		}
		switch v := v.(type) {
		case bool, int:
			return v, nil
		case int64, uint64:
			return n.Value, nil // too big for an int: keep the digits
		case float64:
			if math.IsInf(v, 0) || math.IsNaN(v) || bigInt.MatchString(n.Value) {
				return n.Value, nil // keep what a float would lose
			}
			return v, nil
		}
		return n.Value, nil
	case "!!timestamp", "!!binary", "!unsafe":
		return n.Value, nil
	case "!vault":
		return nil, errVaulted
	default:
		return nil, w.errorf(n, "unsupported YAML tag %s", tag)
	}
}

// setVars reads a vars mapping n (described by what, as in `vars of group
// "web"`) and calls set for each variable. A vault-encrypted value is
// skipped with a warning.
func (w *yamlWalker) setVars(n *yaml.Node, what string, set func(k string, v any, p pos)) {
	n, err := w.resolve(n)
	if err != nil {
		w.fail(err)
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		w.fail(w.errorf(n, "%s must be %s, not %s", what, w.mappingWord(), w.kindName(n)))
		return
	}
	ps, err := w.pairs(n, 0)
	if err != nil {
		w.fail(err)
		return
	}
	for _, p := range ps {
		if err := validVarName(p.k.Value); err != nil {
			w.fail(w.errorf(p.k, "%v", err))
			continue
		}
		v, err := w.value(p.v, 1)
		if errors.Is(err, errVaulted) {
			w.b.warn("%s:%d: variable %q is vault-encrypted; breakglass cannot decrypt it and ignores it", w.file, p.k.Line, p.k.Value)
			continue
		}
		if err != nil {
			w.fail(err)
			continue
		}
		set(p.k.Value, v, w.at(p.k))
	}
}

// inventory walks the top level of a YAML inventory: a mapping of groups.
func (w *yamlWalker) inventory(root *yaml.Node) {
	root, err := w.resolve(root)
	if err != nil {
		w.fail(err)
		return
	}
	if root.Kind != yaml.MappingNode {
		w.fail(w.errorf(root, "an inventory must be %s of groups (such as all:), not %s", w.mappingWord(), w.kindName(root)))
		return
	}
	ps, err := w.pairs(root, 0)
	if err != nil {
		w.fail(err)
		return
	}
	for _, p := range ps {
		if p.k.Value == "plugin" {
			w.fail(w.errorf(p.k, "this is the configuration of an Ansible inventory plugin, which breakglass cannot run; save the output of `ansible-inventory -i FILE --list` as a .json file and use that"))
			return
		}
	}
	for _, p := range ps {
		w.group(p.k, p.v, 0)
	}
}

var groupKeys = "children, hosts, vars"

// bigInt is an integer literal that yaml.v3 resolves to a float because it
// does not fit in 64 bits.
var bigInt = regexp.MustCompile(`^[-+]?[0-9_]+$`)

// group reads one group definition: null, or a mapping of hosts, vars and
// children. It returns the group's name, or "" if it is invalid.
func (w *yamlWalker) group(key, n *yaml.Node, depth int) string {
	if depth > maxNesting {
		w.fail(w.errorf(key, "groups nested deeper than %d", maxNesting))
		return ""
	}
	g := w.b.addGroup(key.Value, w.at(key))
	if g == nil {
		return ""
	}
	n, err := w.resolve(n)
	if err != nil {
		w.fail(err)
		return g.name
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return g.name
	}
	if n.Kind != yaml.MappingNode {
		w.fail(w.errorf(n, "group %q must be %s with keys %s, not %s", g.name, w.mappingWord(), groupKeys, w.kindName(n)))
		return g.name
	}
	if w.active[n] {
		w.fail(w.errorf(key, "group %q contains itself (through an alias)", g.name))
		return ""
	}
	if w.active == nil {
		w.active = map[*yaml.Node]bool{}
	}
	w.active[n] = true
	defer delete(w.active, n)
	ps, err := w.pairs(n, depth)
	if err != nil {
		w.fail(err)
		return g.name
	}
	for _, p := range ps {
		switch p.k.Value {
		case "vars":
			w.setVars(p.v, fmt.Sprintf("vars of group %q", g.name), func(k string, v any, at pos) { w.b.setGroupVar(g, k, v, at) })
		case "hosts":
			w.hosts(g.name, p.v)
		case "children":
			w.children(g.name, p.v, depth)
		default:
			w.fail(w.errorf(p.k, "unknown key %q in group %q (known: %s)", p.k.Value, g.name, groupKeys))
		}
	}
	return g.name
}

// section resolves the value of hosts: or children:, which is a mapping,
// null, or (as Ansible allows) a single name.
func (w *yamlWalker) section(group, what string, n *yaml.Node) []pair {
	n, err := w.resolve(n)
	if err != nil {
		w.fail(err)
		return nil
	}
	switch {
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null":
		return nil
	case n.Kind == yaml.ScalarNode:
		return []pair{{n, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}}}
	case n.Kind == yaml.MappingNode:
		ps, err := w.pairs(n, 0)
		if err != nil {
			w.fail(err)
			return nil
		}
		return ps
	case n.Kind == yaml.SequenceNode:
		w.fail(w.errorf(n, "%s of group %q must be a mapping (name: followed by its vars or nothing), not a list", what, group))
	default:
		w.fail(w.errorf(n, "%s of group %q must be a mapping, not %s", what, group, w.kindName(n)))
	}
	return nil
}

func (w *yamlWalker) hosts(group string, n *yaml.Node) {
	for _, p := range w.section(group, "hosts", n) {
		names, port, err := parseHostPattern(p.k.Value)
		if err != nil {
			w.fail(w.errorf(p.k, "%v", err))
			continue
		}
		var hs []*hostData
		for _, name := range names {
			h := w.b.addHost(name, group, w.at(p.k))
			if h == nil {
				return
			}
			if port != 0 {
				h.vars["ansible_port"] = port
			}
			hs = append(hs, h)
		}
		w.setVars(p.v, fmt.Sprintf("vars of host %q", p.k.Value), func(k string, v any, _ pos) {
			for _, h := range hs {
				h.vars[k] = v
			}
		})
	}
}

func (w *yamlWalker) children(group string, n *yaml.Node, depth int) {
	for _, p := range w.section(group, "children", n) {
		if child := w.group(p.k, p.v, depth+1); child != "" {
			w.b.addChild(group, child, w.at(p.k))
		}
	}
}

// parseVarsFile reads a group_vars or host_vars file: a YAML (or JSON)
// mapping of variables, or nothing.
func (b *builder) parseVarsFile(file string, data []byte) map[string]any {
	out := map[string]any{}
	if isVaultFile(data) {
		b.warn("%s: vault-encrypted file; breakglass cannot decrypt it and ignores it", file)
		return out
	}
	root, ok := b.parseYAMLFile(file, data)
	if !ok || root == nil {
		return out
	}
	w := newWalker(b, file, len(data), false)
	w.setVars(root, "a vars file", func(k string, v any, _ pos) { out[k] = v })
	return out
}

func isVaultFile(data []byte) bool {
	return strings.HasPrefix(strings.TrimLeft(string(data[:min(len(data), 64)]), " \t\r\n"), "$ANSIBLE_VAULT;")
}
