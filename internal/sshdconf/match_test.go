package sshdconf

import "testing"

func TestMatchPattern(t *testing.T) {
	tests := []struct {
		s, p string
		want bool
	}{
		{"admin", "admin", true},
		{"admin", "adm*", true},
		{"admin", "*", true},
		{"admin", "a?min", true},
		{"admin", "a?in", false},
		{"admin", "Admin", false},
		{"", "*", true},
		{"", "?", false},
		{"bg-ops1", "bg-*1", true},
		{"bg-ops12", "bg-*1", false},
		{"abc", "**c", true},
	}
	for _, tc := range tests {
		if got := MatchPattern(tc.s, tc.p); got != tc.want {
			t.Errorf("MatchPattern(%q, %q) = %v, want %v", tc.s, tc.p, got, tc.want)
		}
	}
}

func TestMatchPatternList(t *testing.T) {
	tests := []struct {
		s, list string
		want    int
	}{
		{"host1", "host*", 1},
		{"host1", "other,host1", 1},
		{"host1", "!host1,*", -1},
		{"host1", "*,!host1", -1},
		{"host2", "!host1,*", 1},
		{"host2", "!host1", 0},
		{"HOST", "host", 0},
	}
	for _, tc := range tests {
		if got := MatchPatternList(tc.s, tc.list, false); got != tc.want {
			t.Errorf("MatchPatternList(%q, %q) = %d, want %d", tc.s, tc.list, got, tc.want)
		}
	}
}

func TestAddrMatchList(t *testing.T) {
	tests := []struct {
		addr, list string
		want       int
	}{
		{"10.1.2.3", "10.0.0.0/8", 1},
		{"10.1.2.3", "10.1.2.3", 1},
		{"10.1.2.3", "10.1.2.4", 0},
		{"10.1.2.3", "10.1.*", 1},
		{"10.1.2.3", "10.1.2.?", 1},
		{"10.1.2.3", "!10.0.0.0/8", -1},
		{"10.1.2.3", "192.168.0.0/16,!10.1.2.3", -1},
		{"10.1.2.3", "!10.9.9.9,10.0.0.0/8", 1},
		{"10.1.2.3", "10.1.2.3/8", -2}, // host bits set: sshd refuses the pattern
		{"10.1.2.3", "10.0.0.0/33", -2},
		{"10.1.2.3", "", -2},
		{"::1", "::1/128", 1},
		{"::ffff:10.1.2.3", "10.0.0.0/8", 1},
		{"not-an-address", "*", 0},
	}
	for _, tc := range tests {
		if got := AddrMatchList(tc.addr, tc.list); got != tc.want {
			t.Errorf("AddrMatchList(%q, %q) = %d, want %d", tc.addr, tc.list, got, tc.want)
		}
	}
}

func TestMatchUser(t *testing.T) {
	const ip = "192.0.2.7"
	tests := []struct {
		user, pattern string
		want          int
	}{
		{"admin", "admin", 1},
		{"admin", "adm*", 1},
		{"admin", "bob", 0},
		{"admin", "admin@192.0.2.7", 1},
		{"admin", "admin@192.0.2.0/24", 1},
		{"admin", "admin@192.0.2.*", 1},
		{"admin", "*@192.0.2.7", 1},
		{"admin", "admin@198.51.100.1", 0},
		{"admin", "admin@!192.0.2.7,*", 0},
		{"admin", "admin@!198.51.100.1,*", 1},
		{"admin", "admin@!198.51.100.1", 0}, // a negation alone matches nothing
		{"admin", "bob@192.0.2.7", 0},
		{"admin", "admin@192.0.2.7/16", -1}, // malformed: sshd exits
	}
	for _, tc := range tests {
		if got := MatchUser(tc.user, ip, ip, tc.pattern); got != tc.want {
			t.Errorf("MatchUser(%q, %q) = %d, want %d", tc.user, tc.pattern, got, tc.want)
		}
	}
}

func TestUserFiltered(t *testing.T) {
	const ip = "192.0.2.7"
	tests := []struct {
		name                       string
		deny, allow, denyG, allowG []string
		groups                     []string
		wantKeyword                string
	}{
		{name: "nothing set"},
		{name: "allowed", allow: []string{"bob", "admin@192.0.2.0/24"}},
		{name: "not listed", allow: []string{"bob"}, wantKeyword: "AllowUsers"},
		{name: "listed from elsewhere", allow: []string{"admin@10.0.0.0/8"}, wantKeyword: "AllowUsers"},
		{name: "denied first", deny: []string{"admin"}, allow: []string{"admin"}, wantKeyword: "DenyUsers"},
		{name: "deny from elsewhere only", deny: []string{"admin@10.*"}},
		{name: "group allowed", allowG: []string{"ops"}, groups: []string{"admin", "ops"}},
		{name: "group not allowed", allowG: []string{"wheel"}, groups: []string{"admin", "ops"}, wantKeyword: "AllowGroups"},
		{name: "group denied", denyG: []string{"o*"}, allowG: []string{"admin"}, groups: []string{"admin", "ops"}, wantKeyword: "DenyGroups"},
		{name: "users and groups both must pass", allow: []string{"admin"}, allowG: []string{"wheel"}, groups: []string{"admin"}, wantKeyword: "AllowGroups"},
		{name: "no group at all", allowG: []string{"admin"}, wantKeyword: "AllowGroups"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, refused := Filter("admin", tc.groups, ip, ip, tc.deny, tc.allow, tc.denyG, tc.allowG)
			if refused != (tc.wantKeyword != "") || v.Keyword != tc.wantKeyword {
				t.Errorf("got %q (refused %v), want %q", v.Keyword, refused, tc.wantKeyword)
			}
		})
	}
}
