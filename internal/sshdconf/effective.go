package sshdconf

import (
	"strconv"
	"strings"
)

// Effective is sshd's effective configuration for one user and connection
// as `sshd -T -C …` prints it. Values holds every keyword sshd printed
// (lower case), one entry per output line; the fields below are the ones
// breakglass judges lockouts by (Fill sets them from Values).
type Effective struct {
	Values map[string][]string

	AuthorizedKeysFile       []string // as configured, tokens (%u, %h, %U) not expanded
	StrictModes              bool
	UsePAM                   bool
	PubkeyAuthentication     bool
	PermitRootLogin          string
	AllowUsers               []string
	DenyUsers                []string
	AllowGroups              []string
	DenyGroups               []string
	AuthenticationMethods    string
	MaxAuthTries             int
	PubkeyAcceptedAlgorithms []string
	AuthorizedKeysCommand    string
	PidFile                  string
}

// ParseEffective reads sshd -T's output ("keyword value" lines).
func ParseEffective(out string) *Effective {
	c := &Effective{Values: map[string][]string{}}
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSuffix(l, "\r")
		if l == "" {
			continue
		}
		c.Add(l)
	}
	c.Fill()
	return c
}

// Add records one line of sshd -T's output.
func (c *Effective) Add(line string) {
	if c.Values == nil {
		c.Values = map[string][]string{}
	}
	k, v, _ := strings.Cut(line, " ")
	c.Values[k] = append(c.Values[k], v)
}

// Get returns the first value of keyword k ("" when absent).
func (c *Effective) Get(k string) string {
	if v := c.Values[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Fill sets the typed fields from Values.
func (c *Effective) Fill() {
	list := func(k string) []string {
		var out []string
		for _, v := range c.Values[k] {
			out = append(out, strings.Fields(v)...)
		}
		return out
	}
	c.AuthorizedKeysFile = list("authorizedkeysfile")
	c.StrictModes = c.Get("strictmodes") == "yes"
	c.UsePAM = c.Get("usepam") == "yes"
	c.PubkeyAuthentication = c.Get("pubkeyauthentication") == "yes"
	c.PermitRootLogin = c.Get("permitrootlogin")
	c.AllowUsers = list("allowusers")
	c.DenyUsers = list("denyusers")
	c.AllowGroups = list("allowgroups")
	c.DenyGroups = list("denygroups")
	c.AuthenticationMethods = c.Get("authenticationmethods")
	c.MaxAuthTries, _ = strconv.Atoi(c.Get("maxauthtries"))
	c.PubkeyAcceptedAlgorithms = nil
	if v := c.Get("pubkeyacceptedalgorithms"); v != "" {
		c.PubkeyAcceptedAlgorithms = strings.Split(v, ",")
	}
	c.AuthorizedKeysCommand = c.Get("authorizedkeyscommand")
	c.PidFile = c.Get("pidfile")
}

// Refuses applies the effective DenyUsers, AllowUsers, DenyGroups and
// AllowGroups to user (in groups) connecting from ip (host is its name as
// sshd knows it: the address under UseDNS no), in sshd's order.
func (c *Effective) Refuses(user string, groups []string, host, ip string) (Refusal, bool) {
	return Filter(user, groups, host, ip, c.DenyUsers, c.AllowUsers, c.DenyGroups, c.AllowGroups)
}
