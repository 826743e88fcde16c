package inventory

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"unicode/utf8"
)

// ParseINI parses an Ansible INI inventory. file names the source in
// errors. The result has no group_vars/host_vars; Load adds those.
func ParseINI(file string, data []byte) (*Inventory, error) {
	b := newBuilder()
	b.parseINI(file, data)
	return b.finish()
}

var (
	// As Ansible's ini plugin: [name] or [name:type], then an optional comment.
	iniSection   = regexp.MustCompile(`^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$`)
	iniGroupName = regexp.MustCompile(`^([^:\]\s]+)\s*(?:#.*)?$`)
)

type pendingDecl struct {
	p       pos
	state   string // "vars" or "children"
	parents []string
}

// parseINI follows ansible/plugins/inventory/ini.py, but reports every bad
// line instead of stopping at the first.
func (b *builder) parseINI(file string, data []byte) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	pending := map[string]*pendingDecl{}
	var pendingOrder []string
	group, state := "ungrouped", "hosts"
	lines := splitLines(data)
	for i, raw := range lines {
		p := pos{file: file, line: i + 1}
		if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] == '#' || t[0] == ';' {
			continue // comments may hold anything, even bytes that are not UTF-8
		}
		if !utf8.Valid(raw) {
			b.fail(p.errorf("line is not valid UTF-8"))
			continue
		}
		if bytes.IndexByte(raw, 0) >= 0 {
			b.fail(p.errorf("line contains a NUL byte"))
			continue
		}
		line := strings.TrimSpace(string(raw))

		if m := sectionMatch(line); m != nil {
			name, kind := m[1], m[2]
			if kind == "" {
				kind = "hosts"
			}
			if kind != "hosts" && kind != "vars" && kind != "children" {
				b.fail(p.errorf("section [%s:%s] has unknown type %q (want hosts, vars or children)", name, kind, kind))
				state = "skip"
				continue
			}
			if err := validGroupName(name); err != nil {
				b.fail(p.errorf("section %s: %v", line, err))
				state = "skip"
				continue
			}
			group, state = name, kind
			if _, ok := b.groups[name]; !ok {
				// [name] or [name:children] declares a group; [name:vars]
				// only refers to one, declared elsewhere in this file or in
				// an earlier source.
				if kind == "vars" && pending[name] == nil {
					pending[name] = &pendingDecl{p: p, state: "vars"}
					pendingOrder = append(pendingOrder, name)
				}
				b.group(name)
			}
			if d := pending[name]; d != nil && kind != "vars" {
				if d.state == "children" {
					b.addPendingChildren(name, pending)
				} else {
					delete(pending, name)
				}
			}
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			b.fail(p.errorf("invalid section %s: a section is [group], [group:vars] or [group:children], with no spaces", line))
			state = "skip"
			continue
		}

		switch state {
		case "skip":
			// The section header was bad and has been reported.
		case "hosts":
			b.iniHostLine(p, group, line)
		case "vars":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				b.fail(p.errorf("expected key=value in [%s:vars], got %q", group, line))
				continue
			}
			k = strings.TrimSpace(k)
			if err := validVarName(k); err != nil {
				b.fail(p.errorf("%v", err))
				continue
			}
			b.setGroupVar(b.group(group), k, parsePyValue(strings.TrimSpace(v)), p)
		case "children":
			m := iniGroupName.FindStringSubmatch(line)
			if m == nil {
				b.fail(p.errorf("expected a group name in [%s:children], got %q", group, line))
				continue
			}
			child := m[1]
			if err := validGroupName(child); err != nil {
				b.fail(p.errorf("%v", err))
				continue
			}
			if _, ok := b.groups[child]; ok {
				b.addChild(group, child, p)
				continue
			}
			if d := pending[child]; d != nil {
				d.parents = append(d.parents, group)
			} else {
				pending[child] = &pendingDecl{p: p, state: "children", parents: []string{group}}
				pendingOrder = append(pendingOrder, child)
			}
		}
	}
	for _, name := range pendingOrder {
		d := pending[name]
		if d == nil {
			continue
		}
		switch d.state {
		case "vars":
			b.fail(d.p.errorf("section [%s:vars] is for group %q, which is not defined", name, name))
		case "children":
			b.fail(d.p.errorf("section [%s:children] names group %q, which is not defined (add a [%s] section)", d.parents[len(d.parents)-1], name, name))
		}
	}
}

func sectionMatch(line string) []string {
	if !strings.HasPrefix(line, "[") {
		return nil
	}
	return iniSection.FindStringSubmatch(line)
}

func (b *builder) addPendingChildren(group string, pending map[string]*pendingDecl) {
	d := pending[group]
	delete(pending, group)
	for _, parent := range d.parents {
		b.addChild(parent, group, d.p)
		if pd := pending[parent]; pd != nil && pd.state == "children" {
			b.addPendingChildren(parent, pending)
		}
	}
}

// iniHostLine parses "host[:port] [key=value ...]" as Ansible does: split
// like a POSIX shell with # comments, values read as Python literals.
func (b *builder) iniHostLine(p pos, group, line string) {
	tokens, err := shlexSplit(line)
	if err != nil {
		b.fail(p.errorf("host line %q: %v", line, err))
		return
	}
	if len(tokens) == 0 {
		return
	}
	names, port, err := parseHostPattern(tokens[0])
	if err != nil {
		b.fail(p.errorf("%v", err))
		return
	}
	type kv struct {
		k string
		v any
	}
	var vars []kv
	for _, t := range tokens[1:] {
		k, v, ok := strings.Cut(t, "=")
		if !ok {
			b.fail(p.errorf("expected key=value after host %s, got %q", tokens[0], t))
			return
		}
		if err := validVarName(k); err != nil {
			b.fail(p.errorf("%v in %q", err, t))
			return
		}
		vars = append(vars, kv{k, parsePyValue(v)})
	}
	for _, n := range names {
		h := b.addHost(n, group, p)
		if h == nil {
			return
		}
		if port != 0 {
			h.vars["ansible_port"] = port
		}
		for _, e := range vars {
			h.vars[e.k] = e.v
		}
	}
}

// splitLines splits on \n, \r\n and \r, as Python's splitlines does for
// those.
func splitLines(data []byte) [][]byte {
	var lines [][]byte
	for len(data) > 0 {
		i := bytes.IndexAny(data, "\r\n")
		if i < 0 {
			lines = append(lines, data)
			break
		}
		lines = append(lines, data[:i])
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	return lines
}

var (
	errNoClosingQuote = errors.New("no closing quotation")
	errNoEscaped      = errors.New("no escaped character")
)

// shlexSplit is Python's shlex.split(s, comments=True): POSIX quoting,
// backslash escapes, and '#' outside quotes starting a comment.
func shlexSplit(s string) ([]string, error) {
	if !strings.ContainsAny(s, "'\"\\#") {
		return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' || r == '\n' }), nil
	}
	var (
		tokens []string
		tok    strings.Builder
		quoted bool
		state  = ' ' // ' ' between words, 'a' in a word, '\'' or '"' in quotes, '\\' after an escape
		esc    = 'a' // the state an escape returns to
	)
	emit := func() {
		if tok.Len() > 0 || quoted {
			tokens = append(tokens, tok.String())
		}
		tok.Reset()
		quoted = false
	}
	for _, c := range s {
		switch state {
		case ' ', 'a':
			switch {
			case c == ' ' || c == '\t' || c == '\r' || c == '\n':
				if state == 'a' {
					emit()
				}
				state = ' '
			case c == '#':
				if state == 'a' {
					emit()
				}
				return tokens, nil
			case c == '\'' || c == '"':
				state = c
			case c == '\\':
				esc, state = 'a', '\\'
			default:
				tok.WriteRune(c)
				state = 'a'
			}
		case '\'', '"':
			quoted = true
			switch {
			case c == state:
				state = 'a'
			case c == '\\' && state == '"':
				esc, state = state, '\\'
			default:
				tok.WriteRune(c)
			}
		case '\\':
			// Inside double quotes a backslash escapes only '"' and '\'.
			if esc == '"' && c != '"' && c != '\\' {
				tok.WriteByte('\\')
			}
			tok.WriteRune(c)
			state = esc
		}
	}
	switch state {
	case '\'', '"':
		return nil, errNoClosingQuote
	case '\\':
		return nil, errNoEscaped
	case 'a':
		emit()
	}
	return tokens, nil
}
