package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/breakglass/breakglass/internal/transport"
)

// OpenSSH ≥ 9.8 penalises a source address for what its connections do
// (PerSourcePenalties, on by default; srclimit.c srclimit_penalise): each
// refused authentication adds authfail seconds to the address's penalty,
// and once the penalty's time left exceeds min, sshd's listener closes
// every new connection from the address before authentication until it
// runs out. Penalties accumulate up to max; a connection the listener
// closes earns none; an address in PerSourcePenaltyExemptList is never
// penalised. The fresh logins of one run all come from the controller's
// address, so one locked-out user's refusals can cut every other login.
// loginGate is the one place that decides whether and when a fresh login
// is made on a host, so that this never turns into a false result.

// penaltyRules is sshd's PerSourcePenalties as it applies to this
// controller's address.
type penaltyRules struct {
	On       bool          // penalties are on and the address is not exempt
	Known    bool          // read from sshd -T (else OpenSSH's defaults are assumed)
	AuthFail time.Duration // added per refused authentication
	Min      time.Duration // a penalty is enforced once its time left exceeds this
	Max      time.Duration // the most a penalty accumulates to
}

// defaultPenalties are OpenSSH 10's defaults (servconf.c): assumed where
// sshd's configuration was not read (verify opens no control connection);
// on an older sshd they only make a login closed before authentication
// wait a little longer for another try.
var defaultPenalties = penaltyRules{On: true, AuthFail: 5 * time.Second, Min: 15 * time.Second, Max: 600 * time.Second}

// parsePenalties reads sshd -T's persourcepenalties and
// persourcepenaltyexemptlist for a controller at client. An sshd that
// prints no persourcepenalties (before 9.8) has none.
func parsePenalties(setting, exemptList, client string) penaltyRules {
	setting = strings.TrimSpace(setting)
	if setting == "" || setting == "no" || PenaltyExempt(client, exemptList) {
		return penaltyRules{Known: true}
	}
	p := defaultPenalties
	p.Known = true
	for _, f := range strings.Fields(setting) {
		k, v, ok := strings.Cut(f, ":")
		if !ok {
			continue // "yes": the defaults
		}
		d, err := parseSSHDSeconds(v)
		if err != nil {
			continue
		}
		switch k {
		case "authfail":
			p.AuthFail = d
		case "min":
			p.Min = d
		case "max":
			p.Max = d
		}
	}
	if p.AuthFail <= 0 {
		// Refusals earn nothing: no login of this run can get the address
		// penalised.
		p.On = false
	}
	return p
}

// parseSSHDSeconds reads an sshd time value: seconds, or a number with
// s, m, h, d or w, as sshd -T prints them (convtime, misc.c).
func parseSSHDSeconds(v string) (time.Duration, error) {
	var total time.Duration
	num := ""
	unit := map[byte]time.Duration{'s': time.Second, 'S': time.Second, 'm': time.Minute, 'M': time.Minute, 'h': time.Hour, 'H': time.Hour, 'd': 24 * time.Hour, 'D': 24 * time.Hour, 'w': 7 * 24 * time.Hour, 'W': 7 * 24 * time.Hour}
	flush := func(u time.Duration) error {
		if num == "" {
			return fmt.Errorf("time %q: no number", v)
		}
		n, err := strconv.ParseFloat(num, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("time %q: bad number", v)
		}
		total += time.Duration(n * float64(u))
		num = ""
		return nil
	}
	for i := 0; i < len(v); i++ {
		if u, ok := unit[v[i]]; ok {
			if err := flush(u); err != nil {
				return 0, err
			}
			continue
		}
		num += string(v[i])
	}
	if num != "" {
		if err := flush(time.Second); err != nil {
			return 0, err
		}
	}
	return total, nil
}

// PenaltyExempt reports whether addr is in list, sshd's comma-separated
// addresses and CIDR blocks (PerSourcePenaltyExemptList).
func PenaltyExempt(addr, list string) bool {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	for _, e := range strings.Split(list, ",") {
		e = strings.TrimSpace(e)
		if p, err := netip.ParsePrefix(e); err == nil && p.Contains(a) {
			return true
		}
		if b, err := netip.ParseAddr(e); err == nil && b == a {
			return true
		}
	}
	return false
}

// wait is how long after the first login closed before authentication the
// gate keeps trying: a penalty is enforced from just over min, and grows
// beyond that only by refusals that were in flight when it started, at
// most refusals (this run's) times authfail; never beyond max.
func (p penaltyRules) wait(refusals int) time.Duration {
	return min(p.Max, p.Min+time.Duration(refusals+2)*p.AuthFail) + penaltySlack
}

// PenaltyWait is how long a login closed before authentication is worth
// trying again under OpenSSH's default penalties, after refusals refused
// logins from this address (for a dialer that has no sshd -T to read).
func PenaltyWait(refusals int) time.Duration { return defaultPenalties.wait(refusals) }

// penaltySlack and penaltyRetryEvery: a penalised login is dialled again
// every penaltyRetryEvery (a connection sshd closes earns no penalty), for
// the penalty's bound plus penaltySlack.
var (
	penaltySlack      = 3 * time.Second
	penaltyRetryEvery = 2 * time.Second
)

// ErrLoginPenalised means every try of a fresh login was closed before
// authentication while sshd penalises this controller's address: the
// user's access was not judged, and is no lockout.
var ErrLoginPenalised = errors.New("closed before authentication by sshd's PerSourcePenalties")

// ErrLoginNotRepeated means a login was not made because sshd refused the
// same user with the same key over the same way in earlier in this run: a
// second refusal would only add to this address's penalty.
var ErrLoginNotRepeated = errors.New("not tried again")

// LoginStatus names the outcome of a login that is neither a success nor
// a plain failure, for reports: "penalised" or "not-repeated".
func LoginStatus(err error) string {
	switch {
	case errors.Is(err, ErrLoginPenalised):
		return "penalised"
	case errors.Is(err, ErrLoginNotRepeated):
		return "not-repeated"
	}
	return ""
}

// ClosedInHandshake reports whether err is a dial whose TCP connection
// sshd accepted and then closed or reset during the SSH handshake, before
// any authentication: how its listener drops a penalised connection.
func ClosedInHandshake(err error) bool {
	var de *transport.DialError
	if !errors.As(err, &de) || de.Stage != transport.StageHandshake {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

func loginRefused(err error) bool {
	var de *transport.DialError
	return errors.As(err, &de) && de.Stage == transport.StageAuth
}

// GateLogins wraps the fresh-login dialer of one host for one run: a
// login sshd refused is never made again in the run (same user, key and
// way in), and a login closed before authentication while sshd may be
// penalising this address is tried again as long as the penalty can last
// (read from facts' sshd -T when the run has it), then reported as
// ErrLoginPenalised. host and port are the inventory's, so that a path
// naming them is the same way in as direct.
func GateLogins(inner LoginDialer, facts *Facts, host string, port int) LoginDialer {
	if inner == nil {
		return nil
	}
	g := &loginGate{inner: inner, facts: facts, host: host, port: port, refused: map[gateKey]string{}}
	if pp, ok := inner.(PortPinner); ok {
		return pinningGate{g, pp}
	}
	return g
}

// pinningGate is a loginGate over a dialer that also pins ports
// (secondary_sshd's known_hosts entry), which it passes through.
type pinningGate struct {
	*loginGate
	PortPinner
}

type loginGate struct {
	inner LoginDialer
	facts *Facts
	host  string
	port  int

	mu       sync.Mutex
	refused  map[gateKey]string // the way in it was refused over
	refusals int
}

type gateKey struct {
	user, key, addr, jump string
	port                  int
}

func (g *loginGate) keyOf(user, keyFile string, p Path) gateKey {
	k := gateKey{user: user, key: keyFile, addr: p.Address, jump: p.Jump, port: p.Port}
	if k.addr == g.host {
		k.addr = ""
	}
	if k.port == g.port || (k.port == 22 && g.port == 0) {
		k.port = 0
	}
	return k
}

// ForgetRefusals lets logins refused so far be made again: the runner
// calls it after a task changed the host, which may have fixed them.
// The refusals still count towards how long a penalty can last.
func (g *loginGate) ForgetRefusals() {
	g.mu.Lock()
	clear(g.refused)
	g.mu.Unlock()
}

// penalties reads PerSourcePenalties from any user's effective sshd
// configuration the run gathered, else assumes OpenSSH's defaults.
func (g *loginGate) penalties() penaltyRules {
	rules := defaultPenalties
	if g.facts != nil {
		g.facts.Range(func(_ string, v any) bool {
			sv, ok := v.(SSHDView)
			if !ok {
				return true
			}
			pen, known := sv.SSHDSetting("persourcepenalties")
			if !known {
				return true
			}
			exempt, _ := sv.SSHDSetting("persourcepenaltyexemptlist")
			rules = parsePenalties(pen, exempt, sv.SSHDConn().Client)
			return false
		})
	}
	return rules
}

func (g *loginGate) Login(ctx context.Context, user, keyFile string, p Path) (Runner, func() error, error) {
	k := g.keyOf(user, keyFile, p)
	g.mu.Lock()
	if over, ok := g.refused[k]; ok {
		g.mu.Unlock()
		return nil, nil, fmt.Errorf("%w: sshd refused %s over %s earlier in this run, and another refusal would only add to this address's penalty (PerSourcePenalties)", ErrLoginNotRepeated, user, over)
	}
	g.mu.Unlock()
	var (
		first time.Time
		tries int
	)
	for {
		r, closeFn, err := g.inner.Login(ctx, user, keyFile, p)
		tries++
		switch {
		case err == nil:
			return r, closeFn, nil
		case loginRefused(err):
			g.mu.Lock()
			g.refused[k] = p.Name
			g.refusals++
			g.mu.Unlock()
			return nil, nil, err
		case !ClosedInHandshake(err):
			return nil, nil, err
		}
		pen := g.penalties()
		if !pen.On {
			return nil, nil, err
		}
		if first.IsZero() {
			first = time.Now()
		}
		g.mu.Lock()
		bound := pen.wait(g.refusals)
		g.mu.Unlock()
		next := time.Now().Add(penaltyRetryEvery)
		if dl, ok := ctx.Deadline(); ok && next.After(dl.Add(-time.Second)) || next.After(first.Add(bound)) {
			src := "OpenSSH's defaults assumed"
			if pen.Known {
				src = "as this host's sshd -T says"
			}
			return nil, nil, fmt.Errorf("%w: %s over %s was closed before authentication on each of %d tries over %v; sshd penalises this controller's address for refused logins (authfail %v, enforced above %v, %s), so %s's access was not judged: exempt the controller (PerSourcePenaltyExemptList) and run again: %w",
				ErrLoginPenalised, user, p.Name, tries, time.Since(first).Round(time.Second), pen.AuthFail, pen.Min, src, user, err)
		}
		select {
		case <-ctx.Done():
			return nil, nil, err
		case <-time.After(time.Until(next)):
		}
	}
}
