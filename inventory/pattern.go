package inventory

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// Match returns the hosts an Ansible host pattern selects, in inventory
// order. A pattern is terms separated by ':' (or ',' when it holds a ','):
//
//	all, *            every host
//	web               a group (with its descendants) or, failing that, a host
//	web*, db-[ab]?    shell globs against group and host names
//	~web\d+           a Go regular expression, matched at the start of group
//	                  and host names
//	web[0], web[1:3]  a subscript of the term's hosts (in inventory order)
//	&prod             intersection
//	!staging          exclusion
//
// As in Ansible, unions are taken first, then intersections, then
// exclusions, whatever their order in the pattern; a pattern with only
// intersections or exclusions starts from all. A term naming a host
// exactly selects that host. Globs and regular expressions match group
// names too, so "a*" selects group all and thus every host, as in Ansible.
//
// A pattern that matches nothing gives an empty slice, not an error; an
// empty pattern or an invalid regular expression or glob is an error.
func (inv *Inventory) Match(pattern string) ([]*Host, error) {
	terms, err := splitPattern(pattern)
	if err != nil {
		return nil, err
	}
	var union, inter, excl []string
	for _, t := range terms {
		switch t[0] {
		case '&':
			inter = append(inter, t)
		case '!':
			excl = append(excl, t)
		default:
			union = append(union, t)
		}
	}
	if len(union) == 0 {
		union = []string{"all"}
	}
	in := make([]bool, len(inv.hosts))
	for _, t := range union {
		if i, ok := inv.index[t]; ok {
			in[i] = true
			continue
		}
		m, err := inv.matchTerm(t)
		if err != nil {
			return nil, err
		}
		for _, i := range m {
			in[i] = true
		}
	}
	for _, t := range append(inter, excl...) {
		m, err := inv.matchTerm(t[1:])
		if err != nil {
			return nil, err
		}
		that := make([]bool, len(inv.hosts))
		for _, i := range m {
			that[i] = true
		}
		keep := t[0] == '&'
		for i := range in {
			if in[i] && that[i] != keep {
				in[i] = false
			}
		}
	}
	out := []*Host{}
	for i, ok := range in {
		if ok {
			out = append(out, inv.hosts[i])
		}
	}
	return out, nil
}

// patternTerm is Ansible's split for ':'-separated patterns: runs of
// anything but whitespace, ':' and brackets, or whole bracketed parts.
var patternTerm = regexp.MustCompile(`(?:[^\s:\[\]]|\[[^\]]*\])+`)

// splitPattern splits a pattern into terms as Ansible's split_host_pattern
// does: on ',' if there is one, else on ':' unless the whole pattern is an
// IPv6 address. Unlike Ansible, it refuses what that split would silently
// drop (an unbalanced bracket), and empty patterns and regexps, which would
// otherwise select every host.
func splitPattern(pattern string) ([]string, error) {
	var parts []string
	switch {
	case strings.Contains(pattern, ","):
		parts = strings.Split(pattern, ",")
	case isAddress(strings.TrimSpace(pattern)):
		parts = []string{pattern}
	default:
		parts = patternTerm.FindAllString(pattern, -1)
		if rest := patternTerm.ReplaceAllString(pattern, ""); strings.Trim(rest, ": \t\r\n") != "" {
			return nil, fmt.Errorf("invalid host pattern %q: unbalanced '[' or ']'", pattern)
		}
	}
	var terms []string
	for _, p := range parts {
		p = strings.TrimSpace(p)
		switch p {
		case "", "&", "!":
			continue
		case "~", "&~", "!~":
			return nil, fmt.Errorf("invalid host pattern %q: empty regular expression", pattern)
		}
		terms = append(terms, p)
	}
	if len(terms) == 0 {
		return nil, fmt.Errorf("empty host pattern %q", pattern)
	}
	return terms, nil
}

func isAddress(s string) bool {
	s = strings.TrimPrefix(strings.TrimSuffix(s, "]"), "[")
	_, err := netip.ParseAddr(s)
	return err == nil && strings.Contains(s, ":")
}

// subscript is Ansible's pattern_with_subscript: expr[3], expr[-1],
// expr[1:3], expr[2:].
var subscript = regexp.MustCompile(`^(.+)\[(?:(-?[0-9]+)|([0-9]+)([:-])([0-9]*))\]$`)

// matchTerm returns the positions of the hosts one term (without & or !)
// selects, ascending.
func (inv *Inventory) matchTerm(term string) ([]int, error) {
	expr := term
	var sub []string
	if !strings.HasPrefix(term, "~") {
		if m := subscript.FindStringSubmatch(term); m != nil {
			expr, sub = m[1], m
		}
	}
	hosts, err := inv.enumerate(expr)
	if err != nil {
		return nil, err
	}
	if sub == nil {
		return hosts, nil
	}
	n := len(hosts)
	if sub[2] != "" {
		i, err := strconv.Atoi(sub[2])
		if err != nil {
			return nil, nil
		}
		if i < 0 {
			i += n
		}
		if i < 0 || i >= n {
			return nil, nil
		}
		return hosts[i : i+1], nil
	}
	start, err1 := strconv.Atoi(sub[3])
	end, err2 := n-1, error(nil)
	if sub[5] != "" {
		end, err2 = strconv.Atoi(sub[5])
	}
	if err1 != nil || err2 != nil || start >= n || start > end {
		return nil, nil
	}
	return hosts[start:min(end+1, n)], nil
}

// enumerate is Ansible's _enumerate_matches: hosts of every group whose
// name matches expr, and hosts whose name matches it when no group did or
// expr is a glob or regular expression.
func (inv *Inventory) enumerate(expr string) ([]int, error) {
	if expr == "all" || expr == "*" {
		all := make([]int, len(inv.hosts))
		for i := range all {
			all[i] = i
		}
		return all, nil
	}
	match, err := compileTerm(expr)
	if err != nil {
		return nil, err
	}
	in := make([]bool, len(inv.hosts))
	groupMatched := false
	for _, g := range inv.groups {
		if match(g) {
			groupMatched = true
			for _, i := range inv.groupHosts[g] {
				in[i] = true
			}
		}
	}
	if !groupMatched || strings.HasPrefix(expr, "~") || strings.ContainsAny(expr, ".?*[") {
		for i, h := range inv.hosts {
			if !in[i] && match(h.Name) {
				in[i] = true
			}
		}
	}
	var out []int
	for i, ok := range in {
		if ok {
			out = append(out, i)
		}
	}
	return out, nil
}

// compileTerm turns a term into a name matcher: ~regexp (anchored at the
// start, as Python's re.match), a glob (as fnmatch, the whole name), or a
// plain name.
func compileTerm(expr string) (func(string) bool, error) {
	if strings.HasPrefix(expr, "~") {
		re, err := regexp.Compile(`^(?:` + expr[1:] + `)`)
		if err != nil {
			return nil, fmt.Errorf("invalid host pattern %q: %w", expr, err)
		}
		return re.MatchString, nil
	}
	if !strings.ContainsAny(expr, "*?[") {
		return func(s string) bool { return s == expr }, nil
	}
	re, err := regexp.Compile(globToRegexp(expr))
	if err != nil {
		return nil, fmt.Errorf("invalid host pattern %q: %w", expr, err)
	}
	return re.MatchString, nil
}

// globToRegexp is Python's fnmatch.translate: * ? [seq] [!seq], with an
// unclosed [ taken literally.
func globToRegexp(glob string) string {
	var sb strings.Builder
	sb.WriteString(`^(?s:`)
	for i := 0; i < len(glob); {
		c := glob[i]
		switch c {
		case '*':
			sb.WriteString(`.*`)
			for i < len(glob) && glob[i] == '*' {
				i++
			}
			continue
		case '?':
			sb.WriteString(`.`)
		case '[':
			j := i + 1
			if j < len(glob) && glob[j] == '!' {
				j++
			}
			if j < len(glob) && glob[j] == ']' {
				j++
			}
			for j < len(glob) && glob[j] != ']' {
				j++
			}
			if j >= len(glob) {
				sb.WriteString(`\[`)
				break
			}
			class := glob[i+1 : j]
			i = j + 1
			sb.WriteByte('[')
			if strings.HasPrefix(class, "!") {
				sb.WriteByte('^')
				class = class[1:]
			}
			for _, r := range class {
				if r == '-' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') || r >= 0x80 {
					sb.WriteRune(r)
				} else {
					sb.WriteByte('\\')
					sb.WriteRune(r)
				}
			}
			sb.WriteByte(']')
			continue
		default:
			sb.WriteString(regexp.QuoteMeta(glob[i : i+1]))
		}
		i++
	}
	sb.WriteString(`)$`)
	return sb.String()
}
