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
	"strings"
	"sync"
	"syscall"
	"time"
)

// Roots. A systemd host boots from a Debian root made once with debootstrap
// and cached on the machine, in CacheDir()/roots/SUITE. A root is built in
// SUITE.partial and renamed into place after its marker file is written,
// so a root without the marker (or with another marker) is incomplete or
// outdated and is rebuilt. The .deb files debootstrap downloads stay in
// CacheDir()/debs/SUITE, so a rebuild needs no network and takes about
// half as long. Builds of one root are serialised across processes by a
// lock file beside it.

// rootPackages are what a root holds besides Debian's minbase: systemd as
// PID 1 and what the lab and breakglass need on a host. procps (ps, pgrep)
// is for tests and for a person looking into a host.
var rootPackages = []string{"systemd", "systemd-sysv", "dbus", "openssh-server", "sudo", "procps"}

// rootVersion changes whenever what buildRoot puts into a root changes, so
// cached roots of an older version are rebuilt.
const rootVersion = "1"

// rootMarker is written last into a finished root.
const rootMarker = ".breakglass-lab-root"

// DefaultMirror is the Debian mirror roots are built from; BG_LAB_MIRROR
// overrides it.
const DefaultMirror = "http://deb.debian.org/debian"

// CacheDir is where roots and downloaded packages are kept:
// $BG_LAB_CACHE, or /var/cache/breakglass-lab.
func CacheDir() string {
	if d := os.Getenv("BG_LAB_CACHE"); d != "" {
		return d
	}
	return "/var/cache/breakglass-lab"
}

func markerText(k Kind) string {
	return fmt.Sprintf("breakglass lab root %s version %s packages %s\n", k, rootVersion, strings.Join(rootPackages, ","))
}

// rootReady reports whether dir is a finished root of kind k.
func rootReady(dir string, k Kind) bool {
	b, err := os.ReadFile(filepath.Join(dir, rootMarker))
	return err == nil && string(b) == markerText(k)
}

// Root returns the root dir of kind k, a systemd kind, building it first
// when it is missing, incomplete or outdated. Progress of a build goes to
// log (nil: discarded).
func Root(ctx context.Context, k Kind, log io.Writer) (string, error) {
	if !k.Systemd() {
		return "", fmt.Errorf("root: %s hosts have no root", k)
	}
	if log == nil {
		log = io.Discard
	}
	roots := filepath.Join(CacheDir(), "roots")
	dir := filepath.Join(roots, string(k))
	if rootReady(dir, k) {
		return dir, nil
	}
	if err := os.MkdirAll(roots, 0o755); err != nil {
		return "", fmt.Errorf("root %s: %w", k, err)
	}
	unlock, err := lockPath(ctx, dir+".lock")
	if err != nil {
		return "", fmt.Errorf("root %s: %w", k, err)
	}
	defer unlock()
	if rootReady(dir, k) { // built by another process meanwhile
		return dir, nil
	}
	start := time.Now()
	fmt.Fprintf(log, "breakglass-lab: building the %s root in %s (debootstrap, about two minutes the first time)\n", k, dir)
	if err := buildRoot(ctx, k, dir); err != nil {
		return "", fmt.Errorf("build %s root: %w", k, err)
	}
	fmt.Fprintf(log, "breakglass-lab: built the %s root in %.0fs\n", k, time.Since(start).Seconds())
	return dir, nil
}

// PrepareRoots makes sure the roots of kinds exist, building missing ones
// in parallel. Kinds without a root are ignored.
func PrepareRoots(ctx context.Context, log io.Writer, kinds ...Kind) error {
	var wg sync.WaitGroup
	errs := make([]error, len(kinds))
	for i, k := range kinds {
		if !k.Systemd() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = Root(ctx, k, log)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// lockPath takes an exclusive flock on path (created if missing), waiting
// while another holder has it, until ctx ends.
func lockPath(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for lock %s: %w", path, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// buildRoot debootstraps kind k's suite into dir.partial, makes it a lab
// root and renames it to dir.
func buildRoot(ctx context.Context, k Kind, dir string) error {
	partial := dir + ".partial"
	for _, d := range []string{partial, dir} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("remove incomplete root: %w", err)
		}
	}
	debs := filepath.Join(CacheDir(), "debs", string(k))
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return err
	}
	mirror := os.Getenv("BG_LAB_MIRROR")
	if mirror == "" {
		mirror = DefaultMirror
	}
	logPath := dir + ".log"
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase",
		"--include="+strings.Join(rootPackages, ","),
		"--cache-dir="+debs,
		string(k), partial, mirror)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("debootstrap %s (log %s): %w%s", k, logPath, err, tail(logPath, 1500))
	}
	if err := makeLabRoot(partial); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(partial, rootMarker), []byte(markerText(k)), 0o644, 0, 0); err != nil {
		return err
	}
	return os.Rename(partial, dir)
}

// makeLabRoot turns a fresh Debian root into what every host shares: no
// host keys and an empty machine-id (each host brings its own), the admin
// user with its sudoers drop-in, no systemd-ssh-generator (systemd ≥ 256
// would add an sshd on an AF_UNIX socket that real servers do not have),
// no package files.
func makeLabRoot(root string) error {
	etc := filepath.Join(root, "etc")
	keys, err := filepath.Glob(filepath.Join(etc, "ssh", "ssh_host_*"))
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := os.Remove(k); err != nil {
			return err
		}
	}
	if err := writeFile(filepath.Join(etc, "machine-id"), nil, 0o444, 0, 0); err != nil {
		return err
	}
	if _, _, _, err := addAdmin(etc, etc); err != nil {
		return fmt.Errorf("root: %w", err)
	}
	gen := filepath.Join(etc, "systemd", "system-generators")
	if err := os.MkdirAll(gen, 0o755); err != nil {
		return err
	}
	if err := os.Symlink("/dev/null", filepath.Join(gen, "systemd-ssh-generator")); err != nil {
		return err
	}
	debs, _ := filepath.Glob(filepath.Join(root, "var/cache/apt/archives/*.deb"))
	for _, d := range debs {
		os.Remove(d)
	}
	return nil
}

// tail returns the end of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return "\n" + string(bytes.TrimSpace(b))
}

// rootCached reports whether kind k's root is built.
func rootCached(k Kind) bool {
	return rootReady(filepath.Join(CacheDir(), "roots", string(k)), k)
}
