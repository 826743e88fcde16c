package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/breakglass/breakglass/internal/lab"
	"github.com/breakglass/breakglass/internal/shell"
)

// floorScript is what the floor's control login carries: the two public
// keys as shell variables, then bench/floor.sh.
func (b *bencher) floorScript() ([]byte, error) {
	body, err := os.ReadFile(filepath.Join(b.cfg.Root, "bench", "floor.sh"))
	if err != nil {
		return nil, fmt.Errorf("floor script: %w", err)
	}
	head := fmt.Sprintf("OPS1_KEY=%s\nOPS2_KEY=%s\n", shell.Quote(b.pubs["bg-ops1"]), shell.Quote(b.pubs["bg-ops2"]))
	return append([]byte(head), body...), nil
}

// floorRun is one run of the floor on fresh hosts: every host in parallel
// (forks at a time) gets one control login carrying the change as one
// script, then its verify logins in parallel; then, on the converged
// hosts, the verify logins alone (the floor of `breakglass verify`).
func (b *bencher) floorRun(ctx context.Context) error {
	script, err := b.floorScript()
	if err != nil {
		return err
	}
	n := b.cfg.Hosts
	return b.withLab(ctx, ToolFloor, StepApplyFresh, n, func(l *lab.Lab) error {
		for _, step := range []string{StepApplyFresh, StepVerify} {
			wall, err := b.floorHosts(ctx, l, func(h *lab.Host) error {
				if step == StepApplyFresh {
					if err := b.floorControl(ctx, l, h, script); err != nil {
						return err
					}
				}
				return b.floorLogins(ctx, l, h)
			})
			if ctx.Err() != nil {
				return ctx.Err()
			}
			b.record(step, ToolFloor, n, wall.Seconds(), err)
		}
		return nil
	})
}

// floorHosts runs fn for every host, forks at a time, and returns the wall
// time and the first few errors.
func (b *bencher) floorHosts(ctx context.Context, l *lab.Lab, fn func(*lab.Host) error) (time.Duration, error) {
	sem := make(chan struct{}, b.cfg.Forks)
	errs := make([]error, len(l.Hosts))
	var wg sync.WaitGroup
	start := time.Now()
	for i, h := range l.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = fn(h)
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	var bad []error
	for _, e := range errs {
		if e != nil {
			bad = append(bad, e)
		}
	}
	if len(bad) > 0 {
		return wall, fmt.Errorf("%d of %d hosts failed, first: %w", len(bad), len(l.Hosts), bad[0])
	}
	return wall, nil
}

// floorControl is the one control login: floor.sh through `sudo -n sh -s`.
func (b *bencher) floorControl(ctx context.Context, l *lab.Lab, h *lab.Host, script []byte) error {
	args := append(sshArgs(l, l.AdminKey), "-p", fmt.Sprint(h.Port), lab.AdminUser+"@"+h.Addr, "sudo -n sh -s")
	p, err := run(ctx, cmdSpec{Name: "ssh", Args: args, Stdin: script})
	if err != nil {
		return err
	}
	if p.Code != 0 {
		return fmt.Errorf("floor script on %s: exit %d: %s", h.Name, p.Code, tail(p.Stderr, 3))
	}
	return nil
}

// floorLogins are the verify logins, one per break-glass user, in parallel.
func (b *bencher) floorLogins(ctx context.Context, l *lab.Lab, h *lab.Host) error {
	errs := make([]error, len(bgUsers))
	var wg sync.WaitGroup
	for i, u := range bgUsers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.login(ctx, l, h, u)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
