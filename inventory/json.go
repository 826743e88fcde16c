package inventory

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// ParseJSON parses Ansible dynamic-inventory JSON, the output of an
// inventory script's --list: top-level keys are groups, each a list of
// hosts or an object with hosts (list), vars and children (list), plus
// _meta.hostvars with every host's variables. Without _meta.hostvars the
// hosts have no variables of their own (Load asks a script with --host).
func ParseJSON(file string, data []byte) (*Inventory, error) {
	b := newBuilder()
	b.parseJSON(file, data)
	return b.finish()
}

// parseJSON returns the hosts that need their variables from --host: all of
// them when there is no _meta.hostvars, else none.
func (b *builder) parseJSON(file string, data []byte) (needHostVars []*hostData) {
	root, err := jsonNode(file, data)
	if err != nil {
		b.fail(err)
		return nil
	}
	return b.parseJSONNode(file, root, len(data))
}

func (b *builder) parseJSONNode(file string, root *yaml.Node, size int) (needHostVars []*hostData) {
	w := newWalker(b, file, size, true)
	if root.Kind != yaml.MappingNode {
		w.fail(w.errorf(root, "dynamic inventory must be an object of groups, not %s", w.kindName(root)))
		return nil
	}
	ps, err := w.pairs(root, 0)
	if err != nil {
		w.fail(err)
		return nil
	}
	var hostvars *yaml.Node
	var seen []*hostData // every host, once, in first-seen order
	known := map[*hostData]bool{}
	for _, p := range ps {
		if p.k.Value == "_meta" {
			hostvars = w.meta(p.v)
			continue
		}
		for _, h := range w.dynGroup(p.k, p.v) {
			if !known[h] {
				known[h] = true
				seen = append(seen, h)
			}
		}
	}
	if hostvars == nil {
		return seen
	}
	hv, err := w.pairs(hostvars, 0)
	if err != nil {
		w.fail(err)
		return nil
	}
	byName := map[string]*yaml.Node{}
	for _, p := range hv {
		byName[p.k.Value] = p.v
	}
	for _, h := range seen {
		if v := byName[h.name]; v != nil {
			w.setVars(v, fmt.Sprintf("_meta.hostvars of %q", h.name), func(k string, v any, _ pos) { h.vars[k] = v })
		}
	}
	return nil
}

// meta returns the _meta.hostvars object, or nil.
func (w *yamlWalker) meta(n *yaml.Node) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		w.fail(w.errorf(n, "_meta must be an object with hostvars, not %s", w.kindName(n)))
		return nil
	}
	ps, err := w.pairs(n, 0)
	if err != nil {
		w.fail(err)
		return nil
	}
	var hv *yaml.Node
	for _, p := range ps {
		if p.k.Value != "hostvars" {
			w.fail(w.errorf(p.k, "unknown key %q in _meta (known: hostvars)", p.k.Value))
			continue
		}
		switch {
		case p.v.Kind == yaml.MappingNode:
			hv = p.v
		case p.v.Kind == yaml.ScalarNode && p.v.ShortTag() == "!!null":
			hv = &yaml.Node{Kind: yaml.MappingNode}
		default:
			w.fail(w.errorf(p.v, "_meta.hostvars must be an object of host names, not %s", w.kindName(p.v)))
		}
	}
	return hv
}

// dynGroup reads one group of dynamic-inventory JSON, as Ansible's script
// plugin does: a list is the group's hosts; an object without hosts, vars
// or children is the variables of a host named like the group.
func (w *yamlWalker) dynGroup(key, n *yaml.Node) []*hostData {
	g := w.b.addGroup(key.Value, w.at(key))
	if g == nil {
		return nil
	}
	var hosts []*hostData
	addHosts := func(list *yaml.Node) {
		if list.Kind == yaml.ScalarNode && list.ShortTag() == "!!null" {
			return
		}
		if list.Kind != yaml.SequenceNode {
			w.fail(w.errorf(list, "hosts of group %q must be a list of names, not %s", g.name, w.kindName(list)))
			return
		}
		for _, h := range list.Content {
			if h.Kind != yaml.ScalarNode || h.ShortTag() != "!!str" {
				w.fail(w.errorf(h, "a host of group %q must be a name, not %s", g.name, w.kindName(h)))
				continue
			}
			if err := validHostName(h.Value); err != nil {
				w.fail(w.errorf(h, "%v", err))
				continue
			}
			hd := w.b.addHost(h.Value, g.name, w.at(h))
			if hd == nil {
				return
			}
			hosts = append(hosts, hd)
		}
	}
	switch n.Kind {
	case yaml.SequenceNode:
		addHosts(n)
		return hosts
	case yaml.MappingNode:
	default:
		if n.ShortTag() != "!!null" {
			w.fail(w.errorf(n, "group %q must be a list of hosts or an object with hosts, vars and children, not %s", g.name, w.kindName(n)))
		}
		return nil
	}
	ps, err := w.pairs(n, 0)
	if err != nil {
		w.fail(err)
		return nil
	}
	structured := false
	for _, p := range ps {
		switch p.k.Value {
		case "hosts", "vars", "children":
			structured = true
		}
	}
	if !structured && len(ps) > 0 {
		// {"web1": {"ansible_host": "10.0.0.1"}}: host web1 in group web1.
		// (Ansible makes {} a host too; here it is an empty group, as
		// ansible-inventory --list prints empty groups that way.)
		if err := validHostName(g.name); err != nil {
			w.fail(w.errorf(key, "%v", err))
			return nil
		}
		h := w.b.addHost(g.name, g.name, w.at(key))
		if h == nil {
			return nil
		}
		w.setVars(n, fmt.Sprintf("vars of host %q", g.name), func(k string, v any, _ pos) { h.vars[k] = v })
		return []*hostData{h}
	}
	for _, p := range ps {
		switch p.k.Value {
		case "hosts":
			addHosts(p.v)
		case "vars":
			w.setVars(p.v, fmt.Sprintf("vars of group %q", g.name), func(k string, v any, at pos) { w.b.setGroupVar(g, k, v, at) })
		case "children":
			if p.v.Kind == yaml.ScalarNode && p.v.ShortTag() == "!!null" {
				continue
			}
			if p.v.Kind != yaml.SequenceNode {
				w.fail(w.errorf(p.v, "children of group %q must be a list of group names, not %s", g.name, w.kindName(p.v)))
				continue
			}
			for _, c := range p.v.Content {
				if c.Kind != yaml.ScalarNode || c.ShortTag() != "!!str" {
					w.fail(w.errorf(c, "a child of group %q must be a group name, not %s", g.name, w.kindName(c)))
					continue
				}
				if cg := w.b.addGroup(c.Value, w.at(c)); cg != nil {
					w.b.addChild(g.name, cg.name, w.at(c))
				}
			}
		default:
			w.fail(w.errorf(p.k, "unknown key %q in group %q (known: %s)", p.k.Value, g.name, groupKeys))
		}
	}
	return hosts
}

// jsonNode decodes JSON into a yaml.Node tree whose nodes carry the line
// and column they start at, so JSON errors read like YAML errors.
func jsonNode(file string, data []byte) (*yaml.Node, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if !utf8.Valid(data) {
		off := 0
		for off < len(data) {
			r, n := utf8.DecodeRune(data[off:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			off += n
		}
		return nil, posAt(file, data, off).errorf("invalid UTF-8")
	}
	d := &jsonDecoder{file: file, data: data, dec: json.NewDecoder(bytes.NewReader(data))}
	d.dec.UseNumber()
	n, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if off := d.start(); off < len(d.data) {
		return nil, d.at(off).errorf("unexpected data after the JSON value")
	}
	return n, nil
}

type jsonDecoder struct {
	file string
	data []byte
	dec  *json.Decoder
}

// start is where the next token begins: the decoder's offset is before the
// whitespace and separators it has yet to skip.
func (d *jsonDecoder) start() int {
	off := int(d.dec.InputOffset())
	for off < len(d.data) {
		switch d.data[off] {
		case ' ', '\t', '\r', '\n', ',', ':':
			off++
			continue
		}
		break
	}
	return off
}

func (d *jsonDecoder) at(off int) pos { return posAt(d.file, d.data, off) }

func posAt(file string, data []byte, off int) pos {
	off = min(off, len(data))
	line := 1 + bytes.Count(data[:off], []byte{'\n'})
	col := 1 + utf8.RuneCount(data[bytes.LastIndexByte(data[:off], '\n')+1:off])
	return pos{file: file, line: line, col: col}
}

func (d *jsonDecoder) syntax(off int, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return d.at(int(se.Offset)).errorf("invalid JSON: %v", se)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return d.at(len(d.data)).errorf("invalid JSON: unexpected end of input")
	}
	return d.at(off).errorf("invalid JSON: %v", err)
}

func (d *jsonDecoder) value(depth int) (*yaml.Node, error) {
	off := d.start()
	p := d.at(off)
	if depth > maxNesting {
		return nil, p.errorf("nesting deeper than %d", maxNesting)
	}
	tok, err := d.dec.Token()
	if err != nil {
		return nil, d.syntax(off, err)
	}
	n := &yaml.Node{Line: p.line, Column: p.col}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n.Kind, n.Tag = yaml.MappingNode, "!!map"
			for d.dec.More() {
				koff := d.start()
				kt, err := d.dec.Token()
				if err != nil {
					return nil, d.syntax(koff, err)
				}
				ks, ok := kt.(string)
				if !ok {
					return nil, d.at(koff).errorf("invalid JSON: object key must be a string")
				}
				kp := d.at(koff)
				k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: ks, Style: yaml.DoubleQuotedStyle, Line: kp.line, Column: kp.col}
				v, err := d.value(depth + 1)
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, k, v)
			}
		case '[':
			n.Kind, n.Tag = yaml.SequenceNode, "!!seq"
			for d.dec.More() {
				v, err := d.value(depth + 1)
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, v)
			}
		default:
			return nil, p.errorf("invalid JSON: unexpected %q", rune(t))
		}
		eoff := d.start()
		if _, err := d.dec.Token(); err != nil { // the closing delimiter
			return nil, d.syntax(eoff, err)
		}
		return n, nil
	case string:
		n.Kind, n.Tag, n.Value, n.Style = yaml.ScalarNode, "!!str", t, yaml.DoubleQuotedStyle
	case json.Number:
		n.Kind, n.Value = yaml.ScalarNode, t.String()
		n.Tag = numberTag(t.String())
	case bool:
		n.Kind, n.Tag, n.Value = yaml.ScalarNode, "!!bool", strconv.FormatBool(t)
	case nil:
		n.Kind, n.Tag, n.Value = yaml.ScalarNode, "!!null", "null"
	default:
		return nil, p.errorf("invalid JSON: unexpected token %v", tok)
	}
	return n, nil
}

// numberTag tags a JSON number: !!int when it fits an int, !!float when it
// is a finite float, else !!str so the digits are kept.
func numberTag(s string) string {
	if _, err := strconv.Atoi(s); err == nil {
		return "!!int"
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) && bytes.ContainsAny([]byte(s), ".eE") {
		return "!!float"
	}
	return "!!str"
}
