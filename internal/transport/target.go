package transport

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/kevinburke/ssh_config"
)

// Target is everything needed to reach one host: where to dial, as whom, with
// which keys, and through which jump hosts.
type Target struct {
	Name          string   // inventory name, for messages
	Host          string   // address to dial (after ansible_host / ssh_config HostName)
	Port          int      // default 22
	User          string   // remote user
	IdentityFiles []string // private key files to try, in order; none → ~/.ssh/id_{ed25519,ecdsa,rsa}
	NoAgent       bool     // do not use ssh-agent for this target (verify logins)
	// IdentitiesOnly offers only IdentityFiles (through the agent when it
	// holds them), not every other key the agent has, as ssh's
	// IdentitiesOnly=yes. It keeps hosts with a low MaxAuthTries reachable
	// when the agent holds many keys.
	IdentitiesOnly bool
	Jumps          []Target // ProxyJump chain, first hop first; each hop's host key verified too
}

// addr is host:port as given to the TCP dialer and to known_hosts matching.
func (t Target) addr() string {
	return net.JoinHostPort(t.Host, strconv.Itoa(t.port()))
}

func (t Target) port() int {
	if t.Port == 0 {
		return 22
	}
	return t.Port
}

func (t Target) label() string {
	if t.Name != "" {
		return t.Name
	}
	return t.Host
}

// SSHConfig is a parsed ~/.ssh/config. A nil *SSHConfig is valid and empty.
type SSHConfig struct {
	path string
	cfg  *ssh_config.Config
}

// LoadSSHConfig reads an OpenSSH client configuration file; "" means
// ~/.ssh/config. A missing file is an empty configuration, not an error.
// Include is honoured; Match blocks other than "Match host" and "Match all"
// are refused, because silently ignoring them could send us to the wrong host
// as the wrong user.
func LoadSSHConfig(path string) (*SSHConfig, error) {
	if path == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("find ssh config: %w", err)
		}
		path = filepath.Join(home, ".ssh", "config")
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &SSHConfig{path: path}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read ssh config: %w", err)
	}
	cfg, err := ssh_config.DecodeBytes(data)
	if err != nil {
		return nil, fmt.Errorf("parse ssh config %s: %w", path, err)
	}
	return &SSHConfig{path: path, cfg: cfg}, nil
}

// get returns the first value ssh would use for key when connecting to alias.
func (c *SSHConfig) get(alias, key string) string {
	if c == nil || c.cfg == nil {
		return ""
	}
	v, err := c.cfg.Get(alias, key)
	if err != nil {
		return ""
	}
	return unquote(strings.TrimSpace(v))
}

func (c *SSHConfig) getAll(alias, key string) []string {
	if c == nil || c.cfg == nil {
		return nil
	}
	vs, err := c.cfg.GetAll(alias, key)
	if err != nil {
		return nil
	}
	for i, v := range vs {
		vs[i] = unquote(strings.TrimSpace(v))
	}
	return vs
}

// sshOptions are the connection settings found in ssh command-line arguments
// or in a config block. Single-valued settings keep the first value given, as
// ssh does; identity files accumulate.
type sshOptions struct {
	hostName       string
	port           string
	user           string
	identityFiles  []string
	proxyJump      string
	identitiesOnly string
	proxyCommand   string
}

func (o *sshOptions) set(key, value string) {
	first := func(dst *string) {
		if *dst == "" {
			*dst = value
		}
	}
	switch strings.ToLower(key) {
	case "hostname":
		first(&o.hostName)
	case "port":
		first(&o.port)
	case "user":
		first(&o.user)
	case "identityfile":
		o.identityFiles = append(o.identityFiles, value)
	case "proxyjump":
		first(&o.proxyJump)
	case "identitiesonly":
		first(&o.identitiesOnly)
	case "proxycommand":
		first(&o.proxyCommand)
	}
	// Everything else is ignored, notably StrictHostKeyChecking and
	// UserKnownHostsFile: host keys are always checked against the
	// known_hosts file breakglass was given.
}

// ssh options that take an argument (from ssh(1)'s synopsis).
const sshFlagsWithArg = "BbcDEeFIiJLlmOoPpQRSWw"

// parseSSHArgs reads the options breakglass honours from ssh command-line
// arguments such as ansible_ssh_common_args.
func parseSSHArgs(args string, o *sshOptions) error {
	words, err := splitWords(args)
	if err != nil {
		return err
	}
	for i := 0; i < len(words); i++ {
		w := words[i]
		if w == "--" {
			break
		}
		if len(w) < 2 || w[0] != '-' {
			continue // a stray positional word: ssh would take it as the host
		}
		for j := 1; j < len(w); j++ {
			c := w[j]
			if strings.IndexByte(sshFlagsWithArg, c) < 0 {
				continue // a flag without argument, like -q or -4
			}
			val := w[j+1:]
			if val == "" {
				if i+1 >= len(words) {
					return fmt.Errorf("option -%c needs a value", c)
				}
				i++
				val = words[i]
			}
			switch c {
			case 'p':
				o.set("Port", val)
			case 'l':
				o.set("User", val)
			case 'i':
				o.set("IdentityFile", val)
			case 'J':
				o.set("ProxyJump", val)
			case 'o':
				k, v := splitOption(val)
				o.set(k, v)
			}
			break
		}
	}
	return nil
}

// splitOption splits an ssh -o argument: "Key=Value", "Key Value" or
// "Key = Value".
func splitOption(s string) (key, value string) {
	s = strings.TrimSpace(s)
	i := strings.IndexAny(s, " \t=")
	if i < 0 {
		return s, ""
	}
	key, rest := s[:i], strings.TrimLeft(s[i:], " \t")
	rest = strings.TrimPrefix(rest, "=")
	return key, unquote(strings.TrimSpace(rest))
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

// splitWords splits s into words like a POSIX shell does, without any
// expansion: whitespace separates words, single quotes keep everything,
// double quotes keep everything but \" \\ \$ \`, a backslash outside quotes
// escapes the next character.
func splitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unterminated single quote in %q", s)
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated double quote in %q", s)
			}
			inWord = true
		case c == '\\':
			if i+1 < len(s) {
				i++
				if s[i] != '\n' {
					cur.WriteByte(s[i])
				}
			}
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// Resolve builds the Target of inventory host name from its variables, then
// fills what they leave open from cfg (~/.ssh/config), as ansible-playbook
// running ssh would:
//
//   - ansible_host, ansible_port, ansible_user, ansible_ssh_private_key_file
//     come first;
//   - then ansible_ssh_common_args and ansible_ssh_extra_args (-J, -p, -l, -i,
//     -o ProxyJump=, -o Port=, -o User=, -o IdentityFile=, -o HostName=,
//     -o IdentitiesOnly=; other options are ignored, and
//     StrictHostKeyChecking=no never turns host key checks off);
//   - then the ssh_config block matching ansible_host (or the inventory name
//     when there is none): HostName, Port, User, IdentityFile, ProxyJump,
//     IdentitiesOnly;
//   - then defaults: port 22, the local user.
//
// ProxyCommand is refused: it would run a local command, and ignoring it
// would connect elsewhere than the user meant.
func Resolve(name string, vars map[string]any, cfg *SSHConfig) (Target, error) {
	t := Target{Name: name}
	fail := func(format string, args ...any) (Target, error) {
		return Target{}, fmt.Errorf("host %s: %s", name, fmt.Sprintf(format, args...))
	}

	var args sshOptions
	for _, key := range []string{"ansible_ssh_common_args", "ansible_ssh_extra_args"} {
		if err := parseSSHArgs(varString(vars, key), &args); err != nil {
			return fail("%s: %v", key, err)
		}
	}

	alias := firstNonEmpty(varString(vars, "ansible_host"), varString(vars, "ansible_ssh_host"), name)
	alias = strings.ToLower(alias)
	lookup := func(key string) string { return cfg.get(alias, key) }

	if c := firstNonEmpty(args.proxyCommand, lookup("ProxyCommand")); c != "" && !strings.EqualFold(c, "none") {
		return fail("ProxyCommand is not supported (it runs a local command); use ProxyJump or -J instead")
	}

	t.Host = firstNonEmpty(args.hostName, lookup("HostName"), alias)
	t.Host = strings.ToLower(expandTokens(t.Host, map[byte]string{'h': alias, 'n': name}))
	if err := validHost(t.Host); err != nil {
		return fail("%v", err)
	}

	portStr := firstNonEmpty(varString(vars, "ansible_port"), varString(vars, "ansible_ssh_port"), args.port, lookup("Port"))
	if portStr != "" {
		p, err := parsePort(portStr)
		if err != nil {
			return fail("%v", err)
		}
		t.Port = p
	} else {
		t.Port = 22
	}

	t.User = firstNonEmpty(varString(vars, "ansible_user"), varString(vars, "ansible_ssh_user"), args.user, lookup("User"))
	if t.User == "" {
		t.User = localUser()
	}
	if err := validUser(t.User); err != nil {
		return fail("%v", err)
	}

	tokens := map[byte]string{'h': t.Host, 'n': name, 'p': strconv.Itoa(t.Port), 'r': t.User}
	var files []string
	if k := firstNonEmpty(varString(vars, "ansible_ssh_private_key_file"), varString(vars, "ansible_private_key_file")); k != "" {
		files = append(files, k)
	}
	files = append(files, args.identityFiles...)
	if len(files) == 0 {
		files = cfg.getAll(alias, "IdentityFile")
	}
	for _, f := range files {
		p, err := expandPath(f, tokens)
		if err != nil {
			return fail("identity file %q: %v", f, err)
		}
		if !slices.Contains(t.IdentityFiles, p) {
			t.IdentityFiles = append(t.IdentityFiles, p)
		}
	}

	t.IdentitiesOnly = strings.EqualFold(firstNonEmpty(args.identitiesOnly, lookup("IdentitiesOnly")), "yes")

	if jump := firstNonEmpty(args.proxyJump, lookup("ProxyJump")); jump != "" {
		jumps, err := ParseJump(jump, cfg)
		if err != nil {
			return fail("%v", err)
		}
		t.Jumps = jumps
	}
	return t, nil
}

// ParseJump parses a ProxyJump specification as ssh -J does:
// "[user@]host[:port]" hops separated by commas, first hop first, each also
// accepting the ssh://[user@]host[:port] form. Every hop gets its HostName,
// Port, User and IdentityFile from cfg where the spec does not give them.
// "none" (or "") means no jump host.
func ParseJump(spec string, cfg *SSHConfig) ([]Target, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" || strings.EqualFold(spec, "none") {
		return nil, nil
	}
	var hops []Target
	for _, hop := range strings.Split(spec, ",") {
		h, err := parseHop(strings.TrimSpace(hop), cfg)
		if err != nil {
			return nil, fmt.Errorf("jump host %q: %w", hop, err)
		}
		hops = append(hops, h)
	}
	return hops, nil
}

func parseHop(s string, cfg *SSHConfig) (Target, error) {
	s = strings.TrimPrefix(s, "ssh://")
	var t Target
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		t.User, s = s[:i], s[i+1:]
	}
	host, portStr := s, ""
	if strings.HasPrefix(s, "[") {
		h, p, err := net.SplitHostPort(s)
		if err != nil {
			if !strings.HasSuffix(s, "]") {
				return Target{}, err
			}
			h = s[1 : len(s)-1]
		}
		host, portStr = h, p
	} else if strings.Count(s, ":") == 1 {
		host, portStr, _ = strings.Cut(s, ":")
	}
	alias := strings.ToLower(host)
	if alias == "" {
		return Target{}, errors.New("no host")
	}
	if c := cfg.get(alias, "ProxyCommand"); c != "" && !strings.EqualFold(c, "none") {
		return Target{}, errors.New("ProxyCommand is not supported (it runs a local command); use ProxyJump instead")
	}
	t.Name = alias
	t.Host = strings.ToLower(expandTokens(firstNonEmpty(cfg.get(alias, "HostName"), alias), map[byte]string{'h': alias, 'n': alias}))
	if err := validHost(t.Host); err != nil {
		return Target{}, err
	}
	t.Port = 22
	if p := firstNonEmpty(portStr, cfg.get(alias, "Port")); p != "" {
		n, err := parsePort(p)
		if err != nil {
			return Target{}, err
		}
		t.Port = n
	}
	t.User = firstNonEmpty(t.User, cfg.get(alias, "User"), localUser())
	if err := validUser(t.User); err != nil {
		return Target{}, err
	}
	tokens := map[byte]string{'h': t.Host, 'n': alias, 'p': strconv.Itoa(t.Port), 'r': t.User}
	for _, f := range cfg.getAll(alias, "IdentityFile") {
		p, err := expandPath(f, tokens)
		if err != nil {
			return Target{}, fmt.Errorf("identity file %q: %w", f, err)
		}
		if !slices.Contains(t.IdentityFiles, p) {
			t.IdentityFiles = append(t.IdentityFiles, p)
		}
	}
	t.IdentitiesOnly = strings.EqualFold(cfg.get(alias, "IdentitiesOnly"), "yes")
	return t, nil
}

// varString returns an inventory variable as a string; YAML and JSON
// inventories give numbers for ports.
func varString(vars map[string]any, key string) string {
	v, ok := vars[key]
	if !ok || v == nil {
		return ""
	}
	switch v := v.(type) {
	case string:
		return strings.TrimSpace(v)
	case float64:
		if v == float64(int64(v)) {
			return strconv.FormatInt(int64(v), 10)
		}
	}
	return strings.TrimSpace(fmt.Sprint(v))
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("invalid port %q", s)
	}
	return p, nil
}

func validHost(h string) error {
	if h == "" {
		return errors.New("no host address")
	}
	for _, r := range h {
		if r <= ' ' || r == 0x7f || r == '/' || r == '@' {
			return fmt.Errorf("invalid host address %q", h)
		}
	}
	if h[0] == '-' {
		return fmt.Errorf("invalid host address %q", h)
	}
	return nil
}

func validUser(u string) error {
	for _, r := range u {
		if r <= ' ' || r == 0x7f {
			return fmt.Errorf("invalid user name %q", u)
		}
	}
	return nil
}

// localUser is the user ssh would log in as when none is configured.
func localUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "root"
}

// expandPath expands ~ and the ssh_config tokens %d (local home), %u (local
// user), %h (remote host), %r (remote user), %p (port), %n (original name)
// and %%.
func expandPath(p string, tokens map[byte]string) (string, error) {
	home, err := os.UserHomeDir()
	if err != nil && (strings.HasPrefix(p, "~") || strings.Contains(p, "%d")) {
		return "", err
	}
	if p == "~" {
		p = home
	} else if strings.HasPrefix(p, "~/") {
		p = filepath.Join(home, p[2:])
	} else if strings.HasPrefix(p, "~") {
		return "", errors.New("~user paths are not supported")
	}
	all := map[byte]string{'d': home, 'u': localUser()}
	for k, v := range tokens {
		all[k] = v
	}
	return expandTokens(p, all), nil
}

func expandTokens(s string, tokens map[byte]string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		if s[i] == '%' {
			b.WriteByte('%')
		} else if v, ok := tokens[s[i]]; ok {
			b.WriteString(v)
		} else {
			b.WriteByte('%')
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
