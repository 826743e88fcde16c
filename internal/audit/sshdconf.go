package audit

import (
	"strings"

	"github.com/breakglass/breakglass/internal/sshdconf"
)

// The effective configuration (sshd -T -C …) says what sshd will do; the
// files say where it comes from. The checker reads the files in sshd's
// order (sshdconf.Read) so that a finding can name the file and line of
// the value sshd uses.

const mainSSHDConfig = sshdconf.MainConfig

// evidence formats the lines the effective value comes from
// (sshdconf.Sources): "" for sshd's default.
func evidence(lines []sshdconf.Line, keyword string, effective []string) string {
	var s []string
	for _, c := range sshdconf.Sources(lines, keyword, effective) {
		s = append(s, c.String())
	}
	return strings.Join(s, "; ")
}

// setting formats an effective value and where it comes from:
// `PubkeyAuthentication no (/etc/ssh/sshd_config.d/x.conf:2: …)`.
func setting(lines []sshdconf.Line, keyword string, effective ...string) string {
	s := sshdconf.Spelling(keyword) + " " + strings.Join(effective, " ")
	if ev := evidence(lines, keyword, effective); ev != "" {
		return s + " [" + ev + "]"
	}
	return s + " [sshd's default]"
}

// includes reports whether sshd reads file p (which need not exist) from
// a global Include, so that a global setting there is global.
func includes(config map[string][]byte, p string) bool {
	ok, _ := sshdconf.Before(config, p)
	return ok
}
