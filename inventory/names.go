package inventory

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

const maxNameLen = 255

// validHostName accepts a host name breakglass can pass to ssh and put in a
// report without quoting surprises: letters (any script), digits, '.', '-'
// and '_', starting with a letter, digit or '_'; or an IP address. No
// whitespace, control characters, shell metacharacters or path separators,
// and no leading '-' that ssh would take for an option.
func validHostName(s string) error {
	if s == "all" || s == "ungrouped" {
		// A host by that name would hide the group in every pattern.
		return fmt.Errorf("host name %q is the name of a group every inventory has", s)
	}
	err := validName("host", s)
	if err != nil && isIPAddress(s) {
		return nil
	}
	return err
}

// isIPAddress accepts IPv4 and IPv6 addresses, with an IPv6 zone of safe
// characters only (netip accepts any zone).
func isIPAddress(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil && strings.Trim(s, "0123456789:.%_-"+letters) == ""
}

const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

// validGroupName accepts what validHostName accepts for names. Ansible
// recommends identifiers but keeps names with '-' and '.', and so do we.
func validGroupName(s string) error { return validName("group", s) }

func validName(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("empty %s name", what)
	case len(s) > maxNameLen:
		return fmt.Errorf("%s name longer than %d bytes: %.40q…", what, maxNameLen, s)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s name %q is not valid UTF-8", what, s)
	}
	for i, r := range s {
		ok := unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || (i > 0 && (r == '-' || r == '.'))
		if !ok {
			return fmt.Errorf("invalid %s name %q: want letters, digits, '.', '-' and '_', starting with a letter, digit or '_'", what, s)
		}
	}
	return nil
}

// parseHostPattern splits an inventory host entry — name, name:port,
// [ipv6]:port, with ranges such as web[01:20] or db-[a:c] — into the host
// names it stands for and the port (0 if none), as Ansible's
// _expand_hostpattern does.
func parseHostPattern(s string) (names []string, port int, err error) {
	host := s
	if strings.HasPrefix(s, "[") {
		// [ipv6] or [ipv6]:port; anything else starting with '[' is a range.
		if j := strings.IndexByte(s, ']'); j > 0 {
			if a, e := netip.ParseAddr(s[1:j]); e == nil && a.Is6() {
				host = s[1:j]
				rest := s[j+1:]
				if rest != "" {
					if port, err = parsePort(s, strings.TrimPrefix(rest, ":")); err != nil || !strings.HasPrefix(rest, ":") {
						return nil, 0, fmt.Errorf("invalid host %q: want [address]:port", s)
					}
				}
				if err := validHostName(host); err != nil {
					return nil, 0, err
				}
				return []string{host}, port, nil
			}
		}
	}
	if _, e := netip.ParseAddr(s); e == nil {
		if err := validHostName(s); err != nil {
			return nil, 0, err
		}
		return []string{s}, 0, nil
	}
	// name:port, where ':' outside brackets separates the port.
	if i := lastColonOutsideBrackets(s); i >= 0 {
		host = s[:i]
		if s[i+1:] == "" {
			return nil, 0, fmt.Errorf("invalid host %q: a trailing ':' is reserved for a port", s)
		}
		if port, err = parsePort(s, s[i+1:]); err != nil {
			return nil, 0, err
		}
		if lastColonOutsideBrackets(host) >= 0 {
			return nil, 0, fmt.Errorf("invalid host %q: too many ':' (write IPv6 addresses with a port as [address]:port)", s)
		}
	}
	names, err = expandRanges(host)
	if err != nil {
		return nil, 0, fmt.Errorf("host %q: %w", s, err)
	}
	for _, n := range names {
		if err := validHostName(n); err != nil {
			return nil, 0, err
		}
	}
	return names, port, nil
}

func parsePort(whole, p string) (int, error) {
	n, err := strconv.Atoi(p)
	if err != nil || p[0] == '+' || p[0] == '-' || n < 1 || n > 65535 {
		return 0, fmt.Errorf("invalid host %q: port %q is not a number from 1 to 65535", whole, p)
	}
	return n, nil
}

func lastColonOutsideBrackets(s string) int {
	depth, last := 0, -1
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			depth++
		case ']':
			if depth > 0 {
				depth--
			}
		case ':':
			if depth == 0 {
				last = i
			}
		}
	}
	return last
}

// hostRange is one [beg:end:step] of a host pattern.
type hostRange struct {
	head string   // text before the range (after the previous one)
	seq  []string // the values the range stands for
}

// expandRanges expands every [beg:end] or [beg:end:step] in s, numeric
// (leading zeros kept when beg has them) or single letters, as Ansible's
// expand_hostname_range does. More than maxRangeHosts names is an error.
func expandRanges(s string) ([]string, error) {
	if !strings.Contains(s, "[") {
		if strings.Contains(s, "]") {
			return nil, fmt.Errorf("unbalanced ']'")
		}
		return []string{s}, nil
	}
	var ranges []hostRange
	total := 1
	rest := s
	for {
		i := strings.IndexByte(rest, '[')
		if i < 0 {
			if strings.Contains(rest, "]") {
				return nil, fmt.Errorf("unbalanced ']'")
			}
			break
		}
		j := strings.IndexByte(rest[i:], ']')
		if j < 0 || strings.Contains(rest[:i], "]") {
			return nil, fmt.Errorf("unbalanced '['")
		}
		j += i
		head, spec := rest[:i], rest[i+1:j]
		rest = rest[j+1:]
		n, err := rangeLen(spec)
		if err != nil {
			return nil, err
		}
		if total > maxRangeHosts/n {
			return nil, fmt.Errorf("range stands for more than %d hosts", maxRangeHosts)
		}
		total *= n
		seq, _ := rangeSeq(spec)
		ranges = append(ranges, hostRange{head: head, seq: seq})
	}
	out := []string{""}
	for _, r := range ranges {
		next := make([]string, 0, len(out)*len(r.seq))
		for _, p := range out {
			for _, v := range r.seq {
				next = append(next, p+r.head+v)
			}
		}
		out = next
	}
	for i := range out {
		out[i] += rest
	}
	return out, nil
}

type rangeSpec struct {
	alpha            bool
	beg, end, step   int
	width            int // zero-padding width, 0 for none
	begText, endText string
}

func parseRange(spec string) (rangeSpec, error) {
	parts := strings.Split(spec, ":")
	if len(parts) != 2 && len(parts) != 3 {
		return rangeSpec{}, fmt.Errorf("range [%s] must be [begin:end] or [begin:end:step]", spec)
	}
	r := rangeSpec{step: 1, begText: parts[0], endText: parts[1]}
	if r.begText == "" {
		r.begText = "0"
	}
	if r.endText == "" {
		return r, fmt.Errorf("range [%s] must specify an end", spec)
	}
	if len(parts) == 3 {
		st, err := strconv.Atoi(parts[2])
		if err != nil || st < 1 || !isDigits(parts[2]) {
			return r, fmt.Errorf("range [%s]: step must be a positive number", spec)
		}
		r.step = st
	}
	if isLetter(r.begText) && isLetter(r.endText) {
		r.alpha = true
		r.beg = strings.Index(letters, r.begText)
		r.end = strings.Index(letters, r.endText)
	} else {
		if !isDigits(r.begText) || !isDigits(r.endText) || len(r.begText) > 9 || len(r.endText) > 9 {
			return r, fmt.Errorf("range [%s] must be numbers or single letters", spec)
		}
		r.beg, _ = strconv.Atoi(r.begText)
		r.end, _ = strconv.Atoi(r.endText)
		if r.begText[0] == '0' && len(r.begText) > 1 {
			if len(r.begText) != len(r.endText) {
				return r, fmt.Errorf("range [%s]: begin and end must have the same number of digits", spec)
			}
			r.width = len(r.begText)
		}
	}
	if r.beg > r.end {
		return r, fmt.Errorf("range [%s]: begin is after end", spec)
	}
	return r, nil
}

func rangeLen(spec string) (int, error) {
	r, err := parseRange(spec)
	if err != nil {
		return 0, err
	}
	return (r.end-r.beg)/r.step + 1, nil
}

func rangeSeq(spec string) ([]string, error) {
	r, err := parseRange(spec)
	if err != nil {
		return nil, err
	}
	seq := make([]string, 0, (r.end-r.beg)/r.step+1)
	for i := r.beg; i <= r.end; i += r.step {
		switch {
		case r.alpha:
			seq = append(seq, letters[i:i+1])
		case r.width > 0:
			seq = append(seq, fmt.Sprintf("%0*d", r.width, i))
		default:
			seq = append(seq, strconv.Itoa(i))
		}
	}
	return seq, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isLetter(s string) bool {
	return len(s) == 1 && strings.Contains(letters, s)
}
