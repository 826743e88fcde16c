package inventory

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// parsePyValue reads an INI value as Ansible does, with Python's
// ast.literal_eval: 22 is an int, True a bool, '…' and "…" strings without
// their quotes, [..] (..) {..} lists and dicts; anything literal_eval
// rejects (true, yes, 0755, a bare word) stays the string as written.
// A Python # comment after a literal is ignored, as Python ignores it.
//
// Integers that do not fit in an int, infinite floats and complex numbers
// stay strings.
func parsePyValue(s string) any {
	p := &pyParser{s: s}
	v, err := p.parseTop()
	if err != nil {
		return s
	}
	return v
}

type pyParser struct {
	s     string
	i     int
	depth int
}

var errPy = fmt.Errorf("not a Python literal")

const maxPyDepth = 100

func (p *pyParser) parseTop() (any, error) {
	p.skipSpace()
	if p.eof() {
		return nil, errPy
	}
	v, err := p.parseExpr()
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if !p.eof() && p.s[p.i] == ',' {
		// A bare tuple: 1, 2
		items := []any{v}
		for !p.eof() && p.s[p.i] == ',' {
			p.i++
			p.skipSpace()
			if p.eof() {
				break
			}
			e, err := p.parseExpr()
			if err != nil {
				return nil, err
			}
			items = append(items, e)
			p.skipSpace()
		}
		v = items
	}
	if !p.eof() {
		return nil, errPy
	}
	return v, nil
}

func (p *pyParser) eof() bool { return p.i >= len(p.s) }

// skipSpace skips blanks and a trailing # comment.
func (p *pyParser) skipSpace() {
	for !p.eof() {
		switch p.s[p.i] {
		case ' ', '\t', '\f':
			p.i++
		case '#':
			p.i = len(p.s)
		default:
			return
		}
	}
}

func (p *pyParser) parseExpr() (any, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxPyDepth {
		return nil, errPy
	}
	p.skipSpace()
	if p.eof() {
		return nil, errPy
	}
	c := p.s[p.i]
	switch {
	case c == '+' || c == '-':
		// literal_eval accepts one sign before a number, not before a bool.
		p.i++
		p.skipSpace()
		if p.eof() || !(isDigitByte(p.s[p.i]) || p.s[p.i] == '.') {
			return nil, errPy
		}
		v, err := p.parseNumber()
		if err != nil {
			return nil, err
		}
		if c == '-' {
			switch n := v.(type) {
			case int:
				if n == math.MinInt {
					return nil, errPy
				}
				return -n, nil
			case float64:
				return -n, nil
			}
		}
		return v, nil
	case isDigitByte(c) || (c == '.' && p.i+1 < len(p.s) && isDigitByte(p.s[p.i+1])):
		return p.parseNumber()
	case c == '[':
		p.i++
		return p.parseSeq(']')
	case c == '(':
		p.i++
		return p.parseParen()
	case c == '{':
		p.i++
		return p.parseBrace()
	case c == '\'' || c == '"':
		return p.parseStrings()
	case isIdentStart(c):
		j := p.i
		for j < len(p.s) && (isIdentStart(p.s[j]) || isDigitByte(p.s[j])) {
			j++
		}
		word := p.s[p.i:j]
		if j < len(p.s) && (p.s[j] == '\'' || p.s[j] == '"') && isStringPrefix(word) {
			return p.parseStrings()
		}
		p.i = j
		switch word {
		case "True":
			return true, nil
		case "False":
			return false, nil
		case "None":
			return nil, nil
		}
		return nil, errPy
	}
	return nil, errPy
}

func isDigitByte(c byte) bool  { return c >= '0' && c <= '9' }
func isIdentStart(c byte) bool { return c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z') }
func isStringPrefix(w string) bool {
	switch strings.ToLower(w) {
	case "r", "u", "b", "br", "rb":
		return true
	}
	return false
}

// parseSeq reads items up to close; the opening bracket is consumed.
func (p *pyParser) parseSeq(close byte) (any, error) {
	items := []any{}
	for {
		p.skipSpace()
		if p.eof() {
			return nil, errPy
		}
		if p.s[p.i] == close {
			p.i++
			return items, nil
		}
		v, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		items = append(items, v)
		p.skipSpace()
		if p.eof() {
			return nil, errPy
		}
		switch p.s[p.i] {
		case ',':
			p.i++
		case close:
		default:
			return nil, errPy
		}
	}
}

// parseParen reads a parenthesised expression or a tuple.
func (p *pyParser) parseParen() (any, error) {
	p.skipSpace()
	if !p.eof() && p.s[p.i] == ')' {
		p.i++
		return []any{}, nil
	}
	v, err := p.parseExpr()
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.eof() {
		return nil, errPy
	}
	if p.s[p.i] == ')' {
		p.i++
		return v, nil
	}
	if p.s[p.i] != ',' {
		return nil, errPy
	}
	p.i++
	rest, err := p.parseSeq(')')
	if err != nil {
		return nil, err
	}
	return append([]any{v}, rest.([]any)...), nil
}

// parseBrace reads a dict, or a set (as a list).
func (p *pyParser) parseBrace() (any, error) {
	p.skipSpace()
	if !p.eof() && p.s[p.i] == '}' {
		p.i++
		return map[string]any{}, nil
	}
	first, err := p.parseExpr()
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.eof() {
		return nil, errPy
	}
	if p.s[p.i] != ':' {
		if p.s[p.i] == '}' {
			p.i++
			return []any{first}, nil
		}
		if p.s[p.i] != ',' {
			return nil, errPy
		}
		p.i++
		rest, err := p.parseSeq('}')
		if err != nil {
			return nil, err
		}
		return append([]any{first}, rest.([]any)...), nil
	}
	m := map[string]any{}
	key := first
	for {
		if _, ok := key.([]any); ok {
			return nil, errPy // unhashable
		}
		if _, ok := key.(map[string]any); ok {
			return nil, errPy
		}
		p.i++ // ':'
		v, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		m[pyKey(key)] = v
		p.skipSpace()
		if p.eof() {
			return nil, errPy
		}
		switch p.s[p.i] {
		case '}':
			p.i++
			return m, nil
		case ',':
			p.i++
		default:
			return nil, errPy
		}
		p.skipSpace()
		if !p.eof() && p.s[p.i] == '}' {
			p.i++
			return m, nil
		}
		if key, err = p.parseExpr(); err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.eof() || p.s[p.i] != ':' {
			return nil, errPy
		}
	}
}

// pyKey spells a dict key as Python's str() would.
func pyKey(k any) string {
	switch k := k.(type) {
	case string:
		return k
	case bool:
		if k {
			return "True"
		}
		return "False"
	case nil:
		return "None"
	case float64:
		return strconv.FormatFloat(k, 'g', -1, 64)
	}
	return fmt.Sprint(k)
}

// parseNumber reads a Python int or float literal (no sign).
func (p *pyParser) parseNumber() (any, error) {
	j := p.i
	for j < len(p.s) && (isDigitByte(p.s[j]) || isIdentStart(p.s[j]) || p.s[j] == '.' ||
		((p.s[j] == '+' || p.s[j] == '-') && j > p.i && (p.s[j-1]|0x20) == 'e' && !strings.ContainsAny(strings.ToLower(p.s[p.i:j]), "xob"))) {
		j++
	}
	lit := p.s[p.i:j]
	p.i = j
	if !validUnderscores(lit) {
		return nil, errPy
	}
	clean := strings.ReplaceAll(lit, "_", "")
	low := strings.ToLower(clean)
	if len(low) > 1 && low[0] == '0' && (low[1] == 'x' || low[1] == 'o' || low[1] == 'b') {
		n, err := strconv.ParseInt(clean, 0, 64)
		if err != nil || len(low) == 2 {
			return nil, errPy
		}
		return int(n), nil
	}
	if strings.ContainsAny(low, ".e") {
		if strings.ContainsAny(low, "abcdfghijklmnopqrstuvwxyz") {
			return nil, errPy // includes complex 1.5j
		}
		f, err := strconv.ParseFloat(clean, 64)
		if err != nil || math.IsInf(f, 0) {
			return nil, errPy
		}
		return f, nil
	}
	if !isDigits(clean) {
		return nil, errPy
	}
	if clean[0] == '0' && strings.Trim(clean, "0") != "" {
		return nil, errPy // Python 3 has no 0755
	}
	n, err := strconv.ParseInt(clean, 10, 64)
	if err != nil {
		return nil, errPy
	}
	return int(n), nil
}

// validUnderscores: Python allows single '_' between digits only.
func validUnderscores(lit string) bool {
	for i := 0; i < len(lit); i++ {
		if lit[i] != '_' {
			continue
		}
		if i == 0 || i == len(lit)-1 || lit[i+1] == '_' || !isHexByte(lit[i+1]) || !(isHexByte(lit[i-1]) || (lit[i-1]|0x20) == 'x' || (lit[i-1]|0x20) == 'o' || (lit[i-1]|0x20) == 'b') {
			return false
		}
	}
	return true
}

func isHexByte(c byte) bool { return isDigitByte(c) || (c|0x20 >= 'a' && c|0x20 <= 'f') }

// parseStrings reads one or more adjacent string literals, concatenated.
func (p *pyParser) parseStrings() (any, error) {
	var sb strings.Builder
	kind := "" // "b" or "s": Python will not concatenate bytes and str
	for {
		p.skipSpace()
		if p.eof() {
			break
		}
		j := p.i
		for j < len(p.s) && isIdentStart(p.s[j]) {
			j++
		}
		prefix := strings.ToLower(p.s[p.i:j])
		if j >= len(p.s) || (p.s[j] != '\'' && p.s[j] != '"') || (prefix != "" && !isStringPrefix(prefix)) {
			break
		}
		k := "s"
		if strings.Contains(prefix, "b") {
			k = "b"
		}
		if kind != "" && kind != k {
			return nil, errPy
		}
		kind = k
		p.i = j
		s, err := p.parseString(strings.Contains(prefix, "r"), k == "b")
		if err != nil {
			return nil, err
		}
		sb.WriteString(s)
	}
	if kind == "" {
		return nil, errPy
	}
	return sb.String(), nil
}

func (p *pyParser) parseString(raw, bytesLit bool) (string, error) {
	q := p.s[p.i]
	delim := string(q)
	if strings.HasPrefix(p.s[p.i:], strings.Repeat(delim, 3)) {
		delim = strings.Repeat(delim, 3)
	}
	p.i += len(delim)
	var sb strings.Builder
	for {
		if p.eof() {
			return "", errPy
		}
		if strings.HasPrefix(p.s[p.i:], delim) {
			p.i += len(delim)
			return sb.String(), nil
		}
		c := p.s[p.i]
		if c == '\n' && len(delim) == 1 {
			return "", errPy
		}
		if c != '\\' {
			r, n := utf8.DecodeRuneInString(p.s[p.i:])
			if bytesLit && r >= 0x80 {
				return "", errPy // bytes literals are ASCII
			}
			sb.WriteString(p.s[p.i : p.i+n])
			p.i += n
			continue
		}
		if p.i+1 >= len(p.s) {
			return "", errPy
		}
		if raw {
			// In a raw string a backslash stays, and keeps the next
			// character from ending the string.
			sb.WriteString(p.s[p.i : p.i+2])
			p.i += 2
			continue
		}
		e := p.s[p.i+1]
		p.i += 2
		switch e {
		case '\\', '\'', '"':
			sb.WriteByte(e)
		case 'a':
			sb.WriteByte('\a')
		case 'b':
			sb.WriteByte('\b')
		case 'f':
			sb.WriteByte('\f')
		case 'n':
			sb.WriteByte('\n')
		case 'r':
			sb.WriteByte('\r')
		case 't':
			sb.WriteByte('\t')
		case 'v':
			sb.WriteByte('\v')
		case '0', '1', '2', '3', '4', '5', '6', '7':
			n := int(e - '0')
			for k := 0; k < 2 && !p.eof() && p.s[p.i] >= '0' && p.s[p.i] <= '7'; k++ {
				n = n*8 + int(p.s[p.i]-'0')
				p.i++
			}
			sb.WriteRune(rune(n))
		case 'x', 'u', 'U':
			width := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
			if bytesLit && e != 'x' {
				sb.WriteByte('\\')
				sb.WriteByte(e)
				continue
			}
			if p.i+width > len(p.s) {
				return "", errPy
			}
			n, err := strconv.ParseUint(p.s[p.i:p.i+width], 16, 32)
			if err != nil || n > utf8.MaxRune {
				return "", errPy
			}
			p.i += width
			sb.WriteRune(rune(n))
		case 'N':
			return "", errPy // \N{name}: not worth a Unicode name table
		default:
			sb.WriteByte('\\')
			sb.WriteByte(e)
		}
	}
}
