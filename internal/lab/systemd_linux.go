package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Systemd hosts. Each is a systemd-nspawn container booting systemd from
// its kind's root (see Root), sharing the machine's network like a
// namespace host, with sshd listening only on its own address.
//
// A host starts as `unshare --mount --propagation private --pid --fork
// --kill-child --mount-proc sh boot.sh …`, forked from the spawner thread
// with Pdeathsig SIGKILL like a namespace host. The script (pid 1 of its
// PID namespace) joins the host's own cgroups, mounts the host's overlay
// (its upper layer over the root) and a tmpfs on /run/systemd/nspawn in its
// private mount namespace, and runs systemd-nspawn --boot; when the
// container reboots (nspawn exits 133) it runs nspawn again. Everything a
// host is — processes, the overlay mount — lives in namespaces that die
// with unshare; its files are in the lab dir. The host's cgroups tell
// Stop, and the lab's reaper, when every process of it is gone.
//
// The reaper is a shell per lab, in its own session, reading a pipe this
// process holds: when the pipe closes (Stop is done, or this process
// died, however), it kills whatever is left in the lab's cgroups, removes
// them and removes the lab dir.

// bootScript is a systemd host's pid 1. Arguments: the root, the host dir,
// the host name, then the cgroup dirs to join.
const bootScript = `# breakglass lab systemd host: pid 1 of its PID namespace.
set -eu
root=$1 dir=$2 name=$3
shift 3
for cg in "$@"; do
	mkdir -p "$cg"
	echo $$ >"$cg/cgroup.procs"
done
mount -t overlay overlay -o "lowerdir=$root,upperdir=$dir/upper,workdir=$dir/work" "$dir/fs"
mkdir -p /run/systemd/nspawn
mount -t tmpfs -o mode=0755 tmpfs /run/systemd/nspawn
while :; do
	rc=0
	systemd-nspawn --quiet --register=no --keep-unit --console=read-only \
		--boot --directory="$dir/fs" --machine="$name" </dev/null || rc=$?
	echo "breakglass-lab: systemd-nspawn exited with status $rc"
	[ "$rc" -eq 133 ] || exit "$rc" # 133: the container rebooted
	echo "breakglass-lab: rebooting $name"
done
`

// reaperScript cleans up after a lab of systemd hosts once its stdin
// closes. Arguments: the lab dir, then the lab's cgroup dirs.
const reaperScript = `# breakglass lab reaper.
dir=$1
shift
while read -r _; do :; done
i=0
while [ "$i" -lt 200 ]; do
	pids=$(for cg in "$@"; do [ -d "$cg" ] && find "$cg" -name cgroup.procs -exec cat {} +; done)
	[ -n "$pids" ] || break
	for p in $pids; do kill -KILL "$p" 2>/dev/null; done
	i=$((i + 1))
	sleep 0.05
done
for cg in "$@"; do
	[ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
	rmdir "${cg%/*}" 2>/dev/null # breakglass-lab/, unless other labs use it
done
rm -rf -- "$dir"
`

// labCgroupName is the cgroup, under each hierarchy's root, of the lab in dir.
func labCgroupName(dir string) string {
	return filepath.Join("breakglass-lab", filepath.Base(dir))
}

// cgroupHierarchies are the cgroup hierarchies a host gets its own cgroup
// in: the unified one on a cgroup v2 machine; on a hybrid one, systemd's
// named v1 hierarchy and the unified one. Without its own cgroup, every
// container would make and manage the same payload cgroup.
func cgroupHierarchies() []string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return []string{"/sys/fs/cgroup"}
	}
	var hs []string
	for _, h := range []string{"/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"} {
		if _, err := os.Stat(filepath.Join(h, "cgroup.procs")); err == nil {
			hs = append(hs, h)
		}
	}
	return hs
}

// labCgroups are the lab's cgroup dirs, one per hierarchy.
func (l *Lab) labCgroups() []string {
	var cgs []string
	for _, h := range cgroupHierarchies() {
		cgs = append(cgs, filepath.Join(h, labCgroupName(l.Dir)))
	}
	return cgs
}

// startReaper starts the lab's reaper.
func (l *Lab) startReaper() error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("start reaper: %w", err)
	}
	defer r.Close()
	// The script is an argument, not a file in the lab dir it removes.
	cmd := exec.Command("/bin/sh", append([]string{"-c", reaperScript, "breakglass-lab-reaper", l.Dir}, l.labCgroups()...)...)
	cmd.Stdin = r
	cmd.Dir = "/"
	cmd.Env = hostEnv
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("start reaper: %w", err)
	}
	l.reaper, l.reaperPipe = cmd, w
	return nil
}

// stopReaper lets the reaper do its (by then empty) work and waits for it.
func (l *Lab) stopReaper() {
	if l.reaperPipe == nil {
		return
	}
	l.reaperPipe.Close()
	done := make(chan struct{})
	go func() { l.reaper.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
	}
}

// systemdTemplate is what every host of a lab shares: its root and what
// each host's layer needs from it.
type systemdTemplate struct {
	root     string
	uid, gid int
	skel     map[string][]byte
	hosts    []byte
}

// minInotifyInstances is what the machine must allow each user (root
// included): every systemd host takes a dozen inotify instances (systemd,
// journald, logind, …), and at Debian's default of 128 a few dozen hosts
// at once make systemd exit at boot with "Too many open files".
const minInotifyInstances = 8192

// raiseInotifyInstances raises fs.inotify.max_user_instances to
// minInotifyInstances when it is lower, for the whole machine (the lab
// needs root anyway; the setting only lifts a limit).
func raiseInotifyInstances() error {
	const p = "/proc/sys/fs/inotify/max_user_instances"
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n >= minInotifyInstances {
		return nil
	}
	if err := os.WriteFile(p, []byte(strconv.Itoa(minInotifyInstances)+"\n"), 0o644); err != nil {
		return fmt.Errorf("raise %s to %d: %w", p, minInotifyInstances, err)
	}
	return nil
}

func newSystemdTemplate(root string) (*systemdTemplate, error) {
	if err := raiseInotifyInstances(); err != nil {
		return nil, err
	}
	t := &systemdTemplate{root: root, skel: map[string][]byte{}}
	passwd, err := os.ReadFile(filepath.Join(root, "etc", "passwd"))
	if err != nil {
		return nil, err
	}
	t.uid = lookupID(passwd, AdminUser, -1)
	group, err := os.ReadFile(filepath.Join(root, "etc", "group"))
	if err != nil {
		return nil, err
	}
	t.gid = lookupID(group, AdminUser, -1)
	if t.uid < 0 || t.gid < 0 {
		return nil, fmt.Errorf("root %s has no %s user", root, AdminUser)
	}
	for _, name := range []string{".bashrc", ".profile", ".bash_logout"} {
		if b, err := os.ReadFile(filepath.Join(root, "etc", "skel", name)); err == nil {
			t.skel[name] = b
		}
	}
	// debootstrap writes no /etc/hosts.
	t.hosts, err = os.ReadFile(filepath.Join(root, "etc", "hosts"))
	if errors.Is(err, os.ErrNotExist) {
		t.hosts, err = []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"), nil
	}
	if err != nil {
		return nil, err
	}
	return t, nil
}

// prepareSystemdHost creates h.Dir: the host's upper layer (its own
// /etc files and admin's home), the overlay's work dir and mount point. It
// returns the public host key.
func prepareSystemdHost(h *Host, t *systemdTemplate, adminPub []byte) ([]byte, error) {
	upper := filepath.Join(h.Dir, "upper")
	for _, d := range []string{h.Dir, filepath.Join(h.Dir, "work"), filepath.Join(h.Dir, "fs")} {
		if err := mkdir(d, 0o755, 0, 0); err != nil {
			return nil, err
		}
	}
	// A merged directory takes the upper's mode and owner: make each like
	// the root's.
	for _, d := range []string{"", "etc", "etc/ssh", "etc/ssh/sshd_config.d", "etc/systemd", "etc/systemd/system", "home"} {
		if err := mkdirLike(filepath.Join(upper, d), filepath.Join(t.root, d)); err != nil {
			return nil, err
		}
	}
	files, pub, err := hostFiles(h, t.hosts)
	if err != nil {
		return nil, err
	}
	// ssh.socket (socket activation, off unless a test turns it on) must
	// listen where ssh.service would: only on the host's address.
	socket := fmt.Sprintf("# breakglass lab host %s: only its own address.\n[Socket]\nListenStream=\nListenStream=%s:22\n", h.Name, h.Addr)
	files = append(files,
		etcFile{"machine-id", fmt.Appendf(nil, "%s\n", randomHex(16)), 0o444},
		etcFile{"systemd/system/ssh.socket.d/lab.conf", []byte(socket), 0o644},
	)
	etc := filepath.Join(upper, "etc")
	for _, f := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(etc, f.path)), 0o755); err != nil {
			return nil, err
		}
		if err := writeFile(filepath.Join(etc, f.path), f.data, f.mode, 0, 0); err != nil {
			return nil, err
		}
	}
	if err := adminHome(filepath.Join(upper, "home", AdminUser), adminPub, t.uid, t.gid, t.skel); err != nil {
		return nil, err
	}
	return pub, nil
}

// startSystemd launches the host's boot script.
func (h *Host) startSystemd(script string, t *systemdTemplate, labCgroup string) error {
	logf, err := os.Create(filepath.Join(h.Dir, "init.log"))
	if err != nil {
		return fmt.Errorf("create init log: %w", err)
	}
	defer logf.Close()
	args := []string{"--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--mount-proc",
		"--", "/bin/sh", script, t.root, h.Dir, h.Name}
	for _, hier := range cgroupHierarchies() {
		cg := filepath.Join(hier, labCgroup, h.Name)
		h.cgroups = append(h.cgroups, cg)
		args = append(args, cg)
	}
	cmd := exec.Command("unshare", args...)
	cmd.Env = hostEnv
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = hostSysProcAttr()
	if err := spawn(cmd); err != nil {
		return fmt.Errorf("start unshare: %w", err)
	}
	h.started(cmd)
	return nil
}

// children lists pid's child processes.
func children(pid int) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// errNotBooted: the container is not (or no longer, or not yet) running.
var errNotBooted = errors.New("container not running")

// containerInit returns the machine's pid of the container's pid 1 (the
// child of systemd-nspawn, itself a child of the boot script).
func (h *Host) containerInit() (int, error) {
	for _, script := range children(h.PID) {
		for _, nspawn := range children(script) {
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", nspawn))
			if strings.TrimSpace(string(comm)) != "systemd-nspawn" {
				continue
			}
			for _, c := range children(nspawn) {
				if alive(c) {
					return c, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("%s: %w", h.Name, errNotBooted)
}

// cgroupPIDs lists the processes in cgroup dir cg and below.
func cgroupPIDs(cg string) []int {
	var pids []int
	filepath.WalkDir(cg, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		b, _ := os.ReadFile(path)
		for _, f := range strings.Fields(string(b)) {
			if p, err := strconv.Atoi(f); err == nil {
				pids = append(pids, p)
			}
		}
		return nil
	})
	return pids
}

// removeCgroup removes cg and the cgroups below it, deepest first.
func removeCgroup(cg string) error {
	var dirs []string
	filepath.WalkDir(cg, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	var errs []error
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dirs[i], err))
		}
	}
	return errors.Join(errs...)
}

// killSystemd ends a systemd host: SIGKILL to unshare, which takes its
// PID namespace along (Pdeathsig of the boot script); then every process
// left in the host's cgroups is killed, until none is left, and the
// cgroups are removed.
func (h *Host) killSystemd() error {
	h.mu.Lock()
	h.stopped = true
	h.mu.Unlock()
	if h.cmd == nil {
		return nil
	}
	h.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-h.exited:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s: unshare %d did not exit after SIGKILL", h.Name, h.PID)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, cg := range h.cgroups {
		for {
			pids := cgroupPIDs(cg)
			if len(pids) == 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: processes %v still in %s after SIGKILL", h.Name, pids, cg)
			}
			for _, p := range pids {
				syscall.Kill(p, syscall.SIGKILL)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	var errs []error
	for _, cg := range h.cgroups {
		errs = append(errs, removeCgroup(cg))
	}
	return errors.Join(errs...)
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return fmt.Sprintf("%x", b)
}

// systemdDiagnostics is the end of the host's ssh journal, for errors.
func (h *Host) systemdDiagnostics() string {
	pid, err := h.containerInit()
	if err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(pid), "-a", "--",
		"journalctl", "--no-pager", "-n", "30", "-u", "ssh.service", "-u", "ssh.socket").CombinedOutput()
	if len(bytes.TrimSpace(out)) == 0 {
		return ""
	}
	return fmt.Sprintf("\n%s journal:\n%s", h.Name, bytes.TrimSpace(out))
}

// startSystemdHosts boots the lab's hosts from its kind's root, in
// parallel, and waits until each sshd answers.
func (l *Lab) startSystemdHosts(ctx context.Context, adminPub []byte, log io.Writer) error {
	root, err := Root(ctx, l.Kind, log)
	if err != nil {
		return err
	}
	t, err := newSystemdTemplate(root)
	if err != nil {
		return fmt.Errorf("%s root: %w", l.Kind, err)
	}
	sweepStaleCgroups(cgroupHierarchies(), staleCgroupAge)
	if err := l.startReaper(); err != nil {
		return err
	}
	script := filepath.Join(l.Dir, "boot.sh")
	if err := writeFile(script, []byte(bootScript), 0o755, 0, 0); err != nil {
		return err
	}
	labCgroup := labCgroupName(l.Dir)
	pubs := make([][]byte, len(l.Hosts))
	err = l.eachHost(ctx, func(h *Host) error {
		pub, err := prepareSystemdHost(h, t, adminPub)
		if err != nil {
			return err
		}
		pubs[slices.Index(l.Hosts, h)] = pub
		return h.startSystemd(script, t, labCgroup)
	}, func(ctx context.Context, h *Host) error {
		return h.waitBanner(ctx)
	})
	if err != nil {
		return err
	}
	return l.writeClientFiles(pubs)
}

// labCgroupsIfSystemd is labCgroups for a lab of systemd hosts, else nil.
func (l *Lab) labCgroupsIfSystemd() []string {
	if !l.Kind.Systemd() || l.Dir == "" {
		return nil
	}
	return l.labCgroups()
}

// staleCgroupAge is how old an empty lab cgroup must be before another lab
// removes it: older than any lab takes to start its first host.
const staleCgroupAge = 5 * time.Minute

// sweepStaleCgroups removes lab cgroups in the hierarchies that hold no
// process and are older than age: those of a lab whose reaper was killed
// too. A running lab's cgroups always hold its hosts' processes.
func sweepStaleCgroups(hierarchies []string, age time.Duration) {
	for _, h := range hierarchies {
		labs, _ := filepath.Glob(filepath.Join(h, "breakglass-lab", "*"))
		for _, cg := range labs {
			fi, err := os.Stat(cg)
			if err != nil || !fi.IsDir() || time.Since(fi.ModTime()) < age || len(cgroupPIDs(cg)) > 0 {
				continue
			}
			removeCgroup(cg)
		}
	}
}
