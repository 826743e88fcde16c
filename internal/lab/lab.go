// Package lab runs real OpenSSH servers on this machine, without containers:
// each lab host is a mount+UTS+PID namespace (unshare) with private /etc,
// /home, /root, /var/log and /tmp and a tmpfs /run, running the machine's
// own /usr/sbin/sshd on its own loopback address 127.x.y.z:22 with its own
// ed25519 host key and an admin user with passwordless sudo and a key.
//
// A host starts as `unshare --mount --uts --pid --fork --kill-child
// --mount-proc bash init.sh`. The init reports on a control socket (which
// also tells this process its pid); this process then joins the host's
// mount and UTS namespaces from a throwaway thread, mounts the host's dirs
// and sets its hostname, and the init starts sshd and stays as pid 1. A
// host's /etc is an overlay: its own files over one template layer (the
// admin user, no host keys) over the machine's /etc, when the kernel allows
// it; else a copy of a template copy per host.
//
// Hosts die with the process that started them, even when it is SIGKILLed:
// unshare has Pdeathsig SIGKILL (see hostSysProcAttr) and the init exits
// when its control socket closes. A lab dir left behind that way is removed
// by the next Start. It needs root, util-linux and openssh-server; see
// Check.
package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/breakglass/breakglass/internal/shell"
)

// Options says what lab to start.
type Options struct {
	Hosts  int    // how many
	Prefix string // host name prefix, default "lab" → lab01, lab02 … (width 2 below 100, 3 below 1000, …)
	// Dir is where state goes; default a new dir under os.TempDir(). It must
	// not exist or be empty: Stop removes it.
	Dir string
	// Kind is what the hosts are; default Namespace. Systemd kinds build
	// their root first when it is not cached (see Root), which takes
	// minutes: call PrepareRoots beforehand to keep that out of ctx's time.
	Kind Kind
	// Log gets progress of root builds; nil discards it.
	Log io.Writer
}

// Lab is a set of running hosts and the files to reach them.
type Lab struct {
	Dir        string
	Hosts      []*Host
	AdminKey   string // path of admin's private key (ed25519, OpenSSH PEM format, no passphrase, mode 0600)
	KnownHosts string // path of a known_hosts file listing every host by its address (plain, not hashed)
	Inventory  string // path of an Ansible INI inventory: group [lab] with every host

	Kind Kind

	addrs   *addrAlloc
	dirLock *os.File

	reaper     *exec.Cmd // systemd hosts: see startReaper
	reaperPipe *os.File

	stopMu  sync.Mutex
	stopped bool
	stopErr error
}

// DefaultPrefix is the host name prefix when Options.Prefix is empty.
const DefaultPrefix = "lab"

// dirPattern names default lab dirs under os.TempDir(); Start removes those
// left by a process that died without Stop (see sweepStale).
const dirPattern = "breakglass-lab-"

// lockFile is held (flock) for the life of a lab, in the lab dir.
const lockFile = ".lock"

var validPrefix = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// forceCopy makes Start copy /etc per host instead of using overlayfs
// (tests of the fallback).
var forceCopy bool

// Start builds the template /etc once, then starts opts.Hosts hosts in
// parallel and waits until each sshd answers with an SSH banner. On any
// failure, or when ctx ends first, it stops what it started and returns
// an error.
func Start(ctx context.Context, opts Options) (l *Lab, err error) {
	if opts.Hosts < 1 {
		return nil, fmt.Errorf("start lab: want at least 1 host, got %d", opts.Hosts)
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	names := hostNames(opts.Prefix, opts.Hosts)
	if !validPrefix.MatchString(opts.Prefix) || len(names[len(names)-1]) > 63 {
		return nil, fmt.Errorf("start lab: invalid host name prefix %q: want [a-z][a-z0-9-]*, names at most 63 characters", opts.Prefix)
	}
	if opts.Kind == "" {
		opts.Kind = Namespace
	}
	if _, err := ParseKind(string(opts.Kind)); err != nil {
		return nil, fmt.Errorf("start lab: %w", err)
	}
	if err := CheckKind(opts.Kind); err != nil {
		return nil, fmt.Errorf("start lab: %w", err)
	}

	l = &Lab{Kind: opts.Kind}
	defer func() {
		if err != nil {
			l.Stop()
			l, err = nil, fmt.Errorf("start lab: %w", err)
		}
	}()
	if err := l.makeDir(opts.Dir); err != nil {
		return l, err
	}
	l.AdminKey = filepath.Join(l.Dir, "admin_ed25519")
	l.KnownHosts = filepath.Join(l.Dir, "known_hosts")
	l.Inventory = filepath.Join(l.Dir, "inventory.ini")

	addrs, alloc, err := allocAddrs(opts.Hosts, randomBlock(), portFree)
	if err != nil {
		return l, err
	}
	l.addrs = alloc

	adminKey, adminPub, err := newKey(AdminUser + "@breakglass-lab")
	if err != nil {
		return l, fmt.Errorf("admin key: %w", err)
	}
	if err := writeFile(l.AdminKey, adminKey, 0o600, 0, 0); err != nil {
		return l, err
	}
	if err := writeFile(l.AdminKey+".pub", adminPub, 0o644, 0, 0); err != nil {
		return l, err
	}
	for i, name := range names {
		l.Hosts = append(l.Hosts, &Host{
			Kind: opts.Kind,
			Name: name,
			Addr: addrs[i].String(),
			Port: 22,
			Dir:  filepath.Join(l.Dir, "hosts", name),
		})
	}
	if err := mkdir(filepath.Join(l.Dir, "hosts"), 0o755, 0, 0); err != nil {
		return l, err
	}
	if opts.Kind.Systemd() {
		if err := l.startSystemdHosts(ctx, adminPub, opts.Log); err != nil {
			return l, err
		}
		return l, nil
	}
	script := filepath.Join(l.Dir, "init.sh")
	if err := writeFile(script, []byte(initScript), 0o755, 0, 0); err != nil {
		return l, err
	}
	tmpl, err := buildTemplate(filepath.Join(l.Dir, "template"), !forceCopy && overlayWorks(l.Dir))
	if err != nil {
		return l, err
	}

	pubs := make([][]byte, len(l.Hosts))
	err = l.eachHost(ctx, func(h *Host) error {
		pub, err := prepareHost(h, tmpl, adminPub)
		if err != nil {
			return err
		}
		pubs[slices.Index(l.Hosts, h)] = pub
		return h.start(script)
	}, func(ctx context.Context, h *Host) error {
		if err := h.setup(ctx, tmpl.lower); err != nil {
			return err
		}
		return h.waitBanner(ctx)
	})
	if err != nil {
		return l, err
	}
	if err := l.writeClientFiles(pubs); err != nil {
		return l, err
	}
	return l, nil
}

// eachHost starts every host: start (preparing a host's files and forking
// its init) is this process's work, bounded; wait (for the host's own
// processes) runs for every host in its own goroutine. The first failure
// cancels the rest.
func (l *Lab) eachHost(ctx context.Context, start func(*Host) error, wait func(context.Context, *Host) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, 2*runtime.NumCPU())
	errs := make([]error, len(l.Hosts))
	var wg sync.WaitGroup
	for i, h := range l.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := func() error {
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					return ctx.Err()
				}
				err := start(h)
				<-sem
				if err != nil {
					return err
				}
				return wait(ctx, h)
			}()
			if err != nil {
				errs[i] = fmt.Errorf("host %s: %w", h.Name, err)
				cancel() // one failure fails the lab: stop waiting for the rest
			}
		}()
	}
	wg.Wait()
	return firstError(errs)
}

// firstError returns the first error that is not just the cancellation
// another host's failure caused.
func firstError(errs []error) error {
	var canceled error
	for _, err := range errs {
		if err == nil {
			continue
		}
		if errors.Is(err, context.Canceled) {
			if canceled == nil {
				canceled = err
			}
			continue
		}
		return err
	}
	return canceled
}

// hostNames returns n names: prefix and a 1-based index padded to 2 digits
// below 100 hosts, 3 below 1000 and so on.
func hostNames(prefix string, n int) []string {
	width := max(2, len(strconv.Itoa(n)))
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s%0*d", prefix, width, i+1)
	}
	return names
}

// makeDir creates the lab dir (a new one under os.TempDir() when dir is
// "") and takes its lock. A given dir must not exist or be empty.
func (l *Lab) makeDir(dir string) error {
	if dir == "" {
		sweepStale(os.TempDir())
		d, err := os.MkdirTemp("", dirPattern)
		if err != nil {
			return fmt.Errorf("create lab dir: %w", err)
		}
		l.Dir = d
	} else {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return fmt.Errorf("lab dir %s: %w", dir, err)
		}
		entries, err := os.ReadDir(abs)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if err := os.MkdirAll(abs, 0o700); err != nil {
				return fmt.Errorf("create lab dir: %w", err)
			}
		case err != nil:
			return fmt.Errorf("lab dir %s: %w", abs, err)
		case len(entries) > 0:
			return fmt.Errorf("lab dir %s is not empty (Stop removes it, so it must be the lab's alone)", abs)
		}
		l.Dir = abs
	}
	// The lock file appears locked already (it is locked under another
	// name, then renamed), so a sweep never mistakes a lab being created
	// for a stale one.
	f, err := os.CreateTemp(l.Dir, lockFile+"-")
	if err == nil {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			err = os.Rename(f.Name(), filepath.Join(l.Dir, lockFile))
		}
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		os.RemoveAll(l.Dir) // new or empty: ours
		l.Dir = ""
		return fmt.Errorf("lock lab dir: %w", err)
	}
	l.dirLock = f
	return nil
}

// sweepStale removes default lab dirs under tmp whose lab is gone: they
// have a lock file that nobody holds. A process that dies without Stop
// (SIGKILL, Ctrl-C of go test) takes its hosts along (Pdeathsig) but
// leaves its dir; the next lab cleans up.
func sweepStale(tmp string) {
	dirs, _ := filepath.Glob(filepath.Join(tmp, dirPattern+"*"))
	for _, d := range dirs {
		f, err := os.Open(filepath.Join(d, lockFile))
		if err != nil {
			continue // not a lab dir, or one being created
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			os.RemoveAll(d)
		}
		f.Close()
	}
}

// writeClientFiles writes known_hosts and the inventory.
func (l *Lab) writeClientFiles(pubs [][]byte) error {
	var kh, inv bytes.Buffer
	inv.WriteString("[lab]\n")
	for i, h := range l.Hosts {
		f := strings.Fields(string(pubs[i]))
		if len(f) < 2 {
			return fmt.Errorf("host %s: bad public host key", h.Name)
		}
		fmt.Fprintf(&kh, "%s %s %s\n", h.Addr, f[0], f[1])
		fmt.Fprintf(&inv, "%s ansible_host=%s ansible_user=%s ansible_ssh_private_key_file=%s\n",
			h.Name, h.Addr, AdminUser, shell.Quote(l.AdminKey))
	}
	if err := writeFile(l.KnownHosts, kh.Bytes(), 0o644, 0, 0); err != nil {
		return err
	}
	return writeFile(l.Inventory, inv.Bytes(), 0o644, 0, 0)
}

// Stop SIGKILLs every host, waits until they are gone and removes Dir. It
// is idempotent, safe to call from several goroutines (a signal handler's
// among them) and never blocks for long: a host is gone within seconds of
// SIGKILL.
func (l *Lab) Stop() error {
	if l == nil {
		return nil
	}
	l.stopMu.Lock()
	defer l.stopMu.Unlock()
	if l.stopped {
		return l.stopErr
	}
	l.stopped = true
	errs := make([]error, len(l.Hosts))
	var wg sync.WaitGroup
	for i, h := range l.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = h.kill()
		}()
	}
	wg.Wait()
	l.addrs.release()
	if cgs := l.labCgroupsIfSystemd(); len(cgs) > 0 {
		for _, cg := range cgs {
			if err := removeCgroup(cg); err != nil {
				errs = append(errs, err)
			}
			syscall.Rmdir(filepath.Dir(cg)) // breakglass-lab/, unless other labs use it
		}
	}
	if l.Dir != "" {
		if err := os.RemoveAll(l.Dir); err != nil {
			errs = append(errs, fmt.Errorf("remove lab dir: %w", err))
		}
	}
	if l.dirLock != nil {
		l.dirLock.Close()
	}
	l.stopReaper()
	l.stopErr = errors.Join(errs...)
	if l.stopErr != nil {
		l.stopErr = fmt.Errorf("stop lab: %w", l.stopErr)
	}
	return l.stopErr
}
