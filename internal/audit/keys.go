package audit

import (
	"crypto/rsa"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/breakglass/breakglass/internal/sshdconf"
)

// keyLine is one key of an authorized_keys file and whether sshd would
// accept a login with it from this connection.
type keyLine struct {
	Line    int
	Type    string
	Comment string
	Problem string // "" when usable
	ID      string // check id of the problem: key-options or key-algorithm
	Fix     string
}

// keyFileLines parses an authorized_keys file. commented counts lines
// that are a key commented out.
func keyFileLines(content []byte) (keys []keyLine, parsed []ssh.PublicKey, opts [][]string, commented int) {
	for i, raw := range strings.Split(string(content), "\n") {
		l := strings.TrimSpace(strings.TrimSuffix(raw, "\r"))
		if l == "" {
			continue
		}
		if l[0] == '#' {
			if pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(strings.TrimLeft(l, "# \t"))); err == nil && pk != nil {
				commented++
			}
			continue
		}
		pk, comment, o, _, err := ssh.ParseAuthorizedKey([]byte(l))
		if err != nil {
			continue
		}
		keys = append(keys, keyLine{Line: i + 1, Type: pk.Type(), Comment: comment})
		parsed = append(parsed, pk)
		opts = append(opts, o)
	}
	return keys, parsed, opts, commented
}

// keyEnv is what judging a key needs to know.
type keyEnv struct {
	Accepted    []string // effective pubkeyacceptedalgorithms
	RequiredRSA int      // effective requiredrsasize
	ClientIP    string
	UseDNS      bool
	Now         float64 // the host's clock
	TZOffset    int     // the host's UTC offset in seconds
	// Revoked says why sshd's RevokedKeys list refuses a key ("" when it
	// does not); nil when no list applies.
	Revoked func(ssh.PublicKey) string
	// CommandFails says why a forced command cannot run ("" when it can
	// or that is not known); nil: not asked.
	CommandFails func(cmd string) string
}

// algorithmsFor are the signature algorithms a key type can log in with.
func algorithmsFor(keyType string) []string {
	switch keyType {
	case ssh.KeyAlgoRSA:
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	case ssh.CertAlgoRSAv01:
		return []string{ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSAv01}
	}
	return []string{keyType}
}

// judgeKey fills k.Problem when sshd would not accept a login with key pk
// carrying options opts.
func judgeKey(k *keyLine, pk ssh.PublicKey, opts []string, e keyEnv, file string) {
	if e.Revoked != nil {
		if why := e.Revoked(pk); why != "" {
			k.Problem, k.ID = why+": sshd refuses it (\"Authentication key … revoked by file\")", "key-revoked"
			k.Fix = fmt.Sprintf("if the revocation is meant, install a new key for the user in place of line %d of %s; if not, take the key out of the revoked list", k.Line, file)
			return
		}
	}
	certAuthority := false
	for _, o := range opts {
		name, val, _ := strings.Cut(o, "=")
		val = strings.Trim(val, `"`)
		switch strings.ToLower(name) {
		case "cert-authority":
			certAuthority = true
		case "expiry-time":
			t, err := parseExpiry(val, e.TZOffset)
			if err != nil {
				k.Problem, k.ID = fmt.Sprintf("option expiry-time=%q cannot be parsed: sshd ignores the line", val), "key-options"
			} else if float64(t.Unix()) <= e.Now {
				k.Problem, k.ID = fmt.Sprintf("option expiry-time=%q: the key expired on %s", val, t.UTC().Format(time.RFC3339)), "key-options"
			}
		case "command":
			// A forced command is often meant (breakglass's own probe keys
			// have one); only one that cannot but fail refuses the login.
			why := failingCommand(val)
			if why == "" && e.CommandFails != nil {
				why = e.CommandFails(val)
			}
			if why != "" {
				k.Problem, k.ID = fmt.Sprintf("option command=%q %s: sshd accepts the key, then runs that in place of every command and shell the user asks for, so the login does nothing but fail", val, why), "forced-command"
			}
		case "from":
			host := e.ClientIP
			if r := sshdconf.MatchHostAndIP(host, e.ClientIP, val); r != 1 {
				why := "does not match"
				if r < 0 {
					why = "is malformed, which sshd treats as no match,"
				}
				if e.UseDNS {
					why += " (UseDNS yes: host names in it were not resolved here)"
				}
				k.Problem, k.ID = fmt.Sprintf("option from=%q %s for client %s", val, why, e.ClientIP), "key-options"
			}
		}
		if k.Problem != "" {
			k.Fix = fmt.Sprintf("edit line %d of %s: fix or remove %s=", k.Line, file, name)
			return
		}
	}
	if certAuthority {
		return // a CA key signs certificates; its own algorithm is checked at login
	}
	switch {
	case k.Type == "ssh-dss":
		k.Problem = "ssh-dss (DSA) key: OpenSSH refuses DSA by default and removed it in 9.8"
	case len(e.Accepted) > 0 && !slices.ContainsFunc(algorithmsFor(k.Type), func(a string) bool { return slices.Contains(e.Accepted, a) }):
		k.Problem = fmt.Sprintf("key type %s is not in the effective PubkeyAcceptedAlgorithms", k.Type)
	default:
		if cpk, ok := pk.(ssh.CryptoPublicKey); ok {
			if rk, ok := cpk.CryptoPublicKey().(*rsa.PublicKey); ok && e.RequiredRSA > 0 && rk.N.BitLen() < e.RequiredRSA {
				k.Problem = fmt.Sprintf("RSA key of %d bits, below RequiredRSASize %d", rk.N.BitLen(), e.RequiredRSA)
			}
		}
	}
	if k.Problem != "" {
		k.ID = "key-algorithm"
		k.Fix = "generate an ed25519 key (ssh-keygen -t ed25519) and install it in place of line " + strconv.Itoa(k.Line) + " of " + file
	}
}

// parseExpiry parses an expiry-time value as sshd does (misc.c
// parse_absolute_time): YYYYMMDD[HHMM[SS]], local time unless it ends in Z.
func parseExpiry(s string, tzOffset int) (time.Time, error) {
	loc := time.FixedZone("host", tzOffset)
	if strings.HasSuffix(s, "Z") || strings.HasSuffix(s, "z") {
		s, loc = s[:len(s)-1], time.UTC
	}
	var layout string
	switch len(s) {
	case 8:
		layout = "20060102"
	case 12:
		layout = "200601021504"
	case 14:
		layout = "20060102150405"
	default:
		return time.Time{}, fmt.Errorf("bad expiry-time %q", s)
	}
	return time.ParseInLocation(layout, s, loc)
}

// parseTZ parses date +%z ("+0100") into seconds east of UTC.
func parseTZ(s string) int {
	if len(s) != 5 || (s[0] != '+' && s[0] != '-') {
		return 0
	}
	h, err1 := strconv.Atoi(s[1:3])
	m, err2 := strconv.Atoi(s[3:5])
	if err1 != nil || err2 != nil {
		return 0
	}
	off := h*3600 + m*60
	if s[0] == '-' {
		off = -off
	}
	return off
}

// failingCommand says why a forced command cannot but fail ("" when it
// may work): false, nologin, or exit with a status other than 0.
func failingCommand(cmd string) string {
	f := strings.Fields(cmd)
	for len(f) > 0 && strings.Contains(f[0], "=") && !strings.HasPrefix(f[0], "/") {
		f = f[1:] // VAR=value before the command
	}
	if len(f) == 0 {
		return ""
	}
	switch base := f[0][strings.LastIndexByte(f[0], '/')+1:]; {
	case base == "false":
		return "always exits 1"
	case base == "nologin":
		return "refuses every login"
	case base == "exit" && len(f) > 1 && strings.TrimRight(f[1], ";") != "0":
		return "exits " + strings.TrimRight(f[1], ";")
	}
	return ""
}
