package lab

import (
	"os/exec"
	"runtime"
	"sync"
)

// The kernel sends a child its parent-death signal (Pdeathsig) when the
// *thread* that forked it exits, not the process. The Go runtime may end an
// OS thread (it does when a goroutine locked to it returns), so a host
// started from an arbitrary goroutine could be SIGKILLed long before the
// test that owns it ends. Every host is therefore forked from one goroutine
// locked to its thread for the life of the process: its Pdeathsig fires
// exactly when the process dies, however it dies.

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	spawnOnce sync.Once
	spawnCh   chan spawnReq
)

// spawn starts cmd from the process-lifetime spawner thread.
func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnCh = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: this thread lives as long as the process
			for r := range spawnCh {
				r.done <- r.cmd.Start()
			}
		}()
	})
	r := spawnReq{cmd: cmd, done: make(chan error, 1)}
	spawnCh <- r
	return <-r.done
}
