package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
)

// The hosts' mounts are made by this process, from a thread that joins the
// host's mount namespace, rather than by mount(8) inside it: on a small VM
// every exec costs tens of milliseconds, and a host's start is mostly
// execs. Such a thread can never serve other goroutines again; it stays
// locked and exits with its goroutine.

// inNamespaces runs fn on a fresh OS thread that has joined the mount and
// UTS namespaces of pid, and throws the thread away afterwards.
func inNamespaces(pid int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		errc <- func() error {
			// A thread sharing its fs_struct (root, cwd) with others may not
			// change mount namespace.
			if err := syscall.Unshare(syscall.CLONE_FS); err != nil {
				return fmt.Errorf("unshare fs attributes: %w", err)
			}
			// Open both first: once in the mount namespace, /proc is the
			// host's, where pid is 1.
			var files []*os.File
			defer func() {
				for _, f := range files {
					f.Close()
				}
			}()
			flags := []int{syscall.CLONE_NEWNS, syscall.CLONE_NEWUTS}
			for _, name := range []string{"mnt", "uts"} {
				f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", pid, name))
				if err != nil {
					return fmt.Errorf("open namespace: %w", err)
				}
				files = append(files, f)
			}
			for i, f := range files {
				if _, _, e := syscall.Syscall(sysSetns, f.Fd(), uintptr(flags[i]), 0); e != 0 {
					return fmt.Errorf("join namespace %s: %w", f.Name(), e)
				}
			}
			return fn()
		}()
	}()
	return <-errc
}

// setupMounts mounts the host's private dirs over the machine's, in the
// host's mount namespace, and sets its hostname. lower is the overlay lower
// dir for /etc, or "" when dir/etc is a full copy.
func setupMounts(dir, lower, name string) error {
	type mnt struct {
		source, target, fstype string
		flags                  uintptr
		data                   string
	}
	bind := func(sub, target string) mnt {
		return mnt{filepath.Join(dir, sub), target, "", syscall.MS_BIND, ""}
	}
	etc := bind("etc", "/etc")
	if lower != "" {
		etc = mnt{"overlay", "/etc", "overlay", 0,
			fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, filepath.Join(dir, "etc"), filepath.Join(dir, "etc.work"))}
	}
	mounts := []mnt{
		etc,
		bind("home", "/home"),
		bind("root", "/root"),
		bind("log", "/var/log"),
		bind("srv", "/srv"),
		{"tmpfs", "/run", "tmpfs", syscall.MS_NOSUID | syscall.MS_NODEV, "mode=0755"},
	}
	mount := func(m mnt) error {
		if err := syscall.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.source, m.target, err)
		}
		return nil
	}
	for _, m := range mounts {
		if err := mount(m); err != nil {
			return err
		}
	}
	if err := mkdir("/run/sshd", 0o755, 0, 0); err != nil { // sshd's privilege separation dir
		return err
	}
	if err := syscall.Sethostname([]byte(name)); err != nil {
		return fmt.Errorf("set hostname %s: %w", name, err)
	}
	// Last: when the lab dir is under /tmp, this hides it.
	return mount(bind("tmp", "/tmp"))
}

// overlayWorks reports whether an overlay of a layer under dir over the
// machine's /etc, with an upper dir under dir, can be mounted (tried in a
// throwaway mount namespace).
func overlayWorks(dir string) bool {
	if strings.ContainsAny(dir, ",:\\") { // overlay's option syntax
		return false
	}
	probe := filepath.Join(dir, "overlay-probe")
	defer os.RemoveAll(probe)
	for _, d := range []string{"layer", "upper", "work", "merged"} {
		if err := os.MkdirAll(filepath.Join(probe, d), 0o755); err != nil {
			return false
		}
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		errc <- func() error {
			if err := syscall.Unshare(syscall.CLONE_FS | syscall.CLONE_NEWNS); err != nil {
				return err
			}
			if err := syscall.Mount("none", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
				return err
			}
			opts := fmt.Sprintf("lowerdir=%s/layer:/etc,upperdir=%s/upper,workdir=%s/work", probe, probe, probe)
			merged := filepath.Join(probe, "merged")
			if err := syscall.Mount("overlay", merged, "overlay", 0, opts); err != nil {
				return err
			}
			return syscall.Unmount(merged, 0)
		}()
	}()
	return <-errc == nil
}
