package sshdconf

import (
	"net/netip"
	"strconv"
	"strings"
)

// Pattern matching as sshd does it (OpenSSH 9.2 match.c, addrmatch.c,
// groupaccess.c), for AllowUsers/DenyUsers/AllowGroups/DenyGroups and the
// from= option of authorized_keys. sshd is run with UseDNS no unless the
// config says otherwise, so the client's "host name" is its address.

// MatchPattern is match.c match_pattern: '*' matches any run of
// characters, '?' one character; no negation, case-sensitive.
func MatchPattern(s, pattern string) bool {
	for {
		if pattern == "" {
			return s == ""
		}
		if pattern[0] == '*' {
			for pattern != "" && pattern[0] == '*' {
				pattern = pattern[1:]
			}
			if pattern == "" {
				return true
			}
			for i := 0; i < len(s); i++ {
				if MatchPattern(s[i:], pattern) {
					return true
				}
			}
			return false
		}
		if s == "" {
			return false
		}
		if pattern[0] != '?' && pattern[0] != s[0] {
			return false
		}
		s, pattern = s[1:], pattern[1:]
	}
}

// MatchPatternList is match.c match_pattern_list: a comma-separated list
// of patterns, each possibly negated with '!'. It returns 1 for a positive
// match, -1 when a negated pattern matches (which wins), 0 for no match.
func MatchPatternList(s, list string, lower bool) int {
	got := 0
	for _, sub := range strings.Split(list, ",") {
		neg := strings.HasPrefix(sub, "!")
		if neg {
			sub = sub[1:]
		}
		if lower {
			sub = strings.ToLower(sub)
		}
		if MatchPattern(s, sub) {
			if neg {
				return -1
			}
			got = 1
		}
	}
	return got
}

// AddrMatchList is addrmatch.c addr_match_list: addr against a
// comma-separated list of CIDR networks or wildcard patterns, each possibly
// negated. It returns 1 for a match, -1 for a negated match, 0 for none and
// -2 for a malformed list.
func AddrMatchList(addr, list string) int {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return 0
	}
	a = a.Unmap()
	ret := 0
	for _, cp := range strings.Split(list, ",") {
		neg := strings.HasPrefix(cp, "!")
		if neg {
			cp = cp[1:]
		}
		if cp == "" {
			return -2
		}
		matched := false
		if p, ok, bad := parseCIDR(cp); bad {
			return -2
		} else if ok {
			matched = p.Contains(a)
		} else {
			matched = MatchPattern(addr, cp)
		}
		if matched {
			if neg {
				return -1
			}
			ret = 1
		}
	}
	return ret
}

// parseCIDR parses an address or address/len as addr_pton_cidr does. ok
// is false when s is not an address (then it is a wildcard pattern); bad
// reports a mask that does not fit the address (sshd's -2).
func parseCIDR(s string) (p netip.Prefix, ok, bad bool) {
	a, bits, hasBits := strings.Cut(s, "/")
	ip, err := netip.ParseAddr(a)
	if err != nil {
		return netip.Prefix{}, false, false
	}
	ip = ip.Unmap()
	n := ip.BitLen()
	if hasBits {
		v, err := strconv.Atoi(bits)
		switch {
		case err != nil || bits[0] < '0' || bits[0] > '9' || v > 128:
			return netip.Prefix{}, false, false // not an address: a wildcard pattern
		case v > ip.BitLen():
			return netip.Prefix{}, false, true
		}
		n = v
	}
	p = netip.PrefixFrom(ip, n)
	if p.Masked().Addr() != ip {
		// sshd refuses host bits set beyond the mask.
		return netip.Prefix{}, false, true
	}
	return p, true, false
}

// MatchHostAndIP is match.c match_host_and_ip.
func MatchHostAndIP(host, ip, patterns string) int {
	mip := AddrMatchList(ip, patterns)
	switch {
	case mip == -2:
		return -1
	case mip == -1:
		return 0
	}
	mhost := MatchPatternList(strings.ToLower(host), patterns, true)
	if mhost == -1 {
		return 0
	}
	if mhost == 0 && mip == 0 {
		return 0
	}
	return 1
}

// MatchUser is match.c match_user: "user" or "user@host-or-address-list".
// host is the client's name as sshd knows it (its address with UseDNS
// no).
func MatchUser(user, host, ip, pattern string) int {
	u, h, ok := strings.Cut(pattern, "@")
	if !ok {
		if MatchPattern(user, pattern) {
			return 1
		}
		return 0
	}
	if !MatchPattern(user, u) {
		return 0
	}
	return MatchHostAndIP(host, ip, h)
}

// MatchGroups is groupaccess.c ga_match: whether any of the user's groups
// matches any pattern (single patterns, no negation).
func MatchGroups(groups, patterns []string) (group, pattern string, ok bool) {
	for _, g := range groups {
		for _, p := range patterns {
			if MatchPattern(g, p) {
				return g, p, true
			}
		}
	}
	return "", "", false
}

// Refusal is why sshd's allowed_user refuses a user by name or group,
// or "" when it lets the user try.
type Refusal struct {
	Keyword string // "DenyUsers", "AllowUsers", "DenyGroups", "AllowGroups"
	Why     string
}

// Filter applies DenyUsers, AllowUsers, DenyGroups and AllowGroups
// in sshd's order (auth.c allowed_user); every one must pass.
func Filter(user string, groups []string, host, ip string, denyUsers, allowUsers, denyGroups, allowGroups []string) (Refusal, bool) {
	for _, p := range denyUsers {
		if r := MatchUser(user, host, ip, p); r != 0 {
			// r < 0 is a malformed pattern: sshd exits (fatal) on it.
			return Refusal{"DenyUsers", "matches DenyUsers pattern " + p}, true
		}
	}
	if len(allowUsers) > 0 {
		allowed := false
		for _, p := range allowUsers {
			r := MatchUser(user, host, ip, p)
			if r < 0 {
				return Refusal{"AllowUsers", "AllowUsers pattern " + p + " is malformed (sshd refuses every login)"}, true
			}
			if r == 1 {
				allowed = true
				break
			}
		}
		if !allowed {
			return Refusal{"AllowUsers", "matches none of AllowUsers " + strings.Join(allowUsers, " ") + " from " + ip}, true
		}
	}
	if len(denyGroups) > 0 || len(allowGroups) > 0 {
		if len(groups) == 0 {
			return Refusal{"AllowGroups", "is in no group"}, true
		}
		if g, p, ok := MatchGroups(groups, denyGroups); ok {
			return Refusal{"DenyGroups", "group " + g + " matches DenyGroups pattern " + p}, true
		}
		if len(allowGroups) > 0 {
			if _, _, ok := MatchGroups(groups, allowGroups); !ok {
				return Refusal{"AllowGroups", "none of its groups (" + strings.Join(groups, " ") + ") matches AllowGroups " + strings.Join(allowGroups, " ")}, true
			}
		}
	}
	return Refusal{}, false
}
