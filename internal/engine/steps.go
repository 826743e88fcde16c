package engine

import (
	"context"
	_ "embed"
	"errors"
	"fmt"

	"github.com/breakglass/breakglass/internal/shell"
)

// Steps: a plan's shell changes over the no-follow helpers (nofollow.sh),
// run in one round trip or queued in the executor's batch (batch.go), and
// the facts they leave known; RunAction, a finding's typed fix, runs
// through the same helpers.

// Step is one planned change and the shell commands that make it.
type Step struct {
	Change Change
	// Cmd is shell commands over the no-follow helpers, every argument
	// quoted.
	Cmd string
	// OKLine, when set, makes Cmd a script that reports on its standard
	// output and exits 0 whatever happened (sudoers): it runs with set +e
	// and stdin from /dev/null, and succeeded only when it printed OKLine
	// as a line. Its output is then explained by Report, whose error is
	// the task's.
	OKLine string
	Report func(out []byte) error
	// Unfinished, when set, says what a step that did not run to its end
	// may have left, and what to check.
	Unfinished string
}

// applyPrelude starts every apply script (apply_prelude.sh: set -e,
// umask, locale and PATH, and bg_reported_step for steps that report) and
// defines the helpers plan commands use to change paths (nofollow.sh:
// bg_write, bg_chown, bg_chmod, bg_mkdir), none of which follows a
// symbolic link a user could have planted; see the comment at the top of
// that file.
//
// Step commands are simple commands, one per line, so that set -e stops
// at the first failure (it does not inside && lists). The script travels
// on the shell's stdin inside one { } group: the shell parses all of it
// before it runs any of it, so a script cut short by a lost connection is
// a syntax error that changes nothing, never half a file.
var applyPrelude = applyPreludeScript + nofollowScript

//go:embed apply_prelude.sh
var applyPreludeScript string

//go:embed nofollow.sh
var nofollowScript string

// RunAction runs one typed fix (a Finding's Action) as root: argv, every
// word quoted, with the no-follow helpers of nofollow.sh (bg_chown,
// bg_chmod, bg_mkdir, bg_write) as commands, so a fix to a path re-checks
// that path when it acts and never follows a link a user planted.
func RunAction(ctx context.Context, r Runner, argv []string) error {
	if len(argv) == 0 {
		return errors.New("no action")
	}
	script := "{\n" + applyPrelude + shell.Join(argv...) + "\n} </dev/null\n"
	if _, err := r.Run(ctx, "/bin/sh -s", []byte(script)); err != nil {
		return fmt.Errorf("%s: %w", shell.Join(argv...), err)
	}
	return nil
}

// applySteps reports steps as the result; unless in check mode it runs them
// in one round trip, then forgets the facts under staleKeys (also when a
// step failed: the host may have changed). On failure the result holds the
// changes that completed and the error names the one that failed.
//
// With env.batch set, the steps are only queued: the runner runs the
// queued steps of several tasks in one round trip (Batch.Flush) and then
// corrects the result this returns if they did not all complete.
func applySteps(ctx context.Context, r Runner, env *Env, steps []Step, staleKeys ...string) (*Result, error) {
	res := &Result{Changed: len(steps) > 0}
	for _, s := range steps {
		res.Changes = append(res.Changes, s.Change)
	}
	if env.Check || len(steps) == 0 {
		return res, nil
	}
	if env.batch != nil {
		env.batch.add(env.batchTask, steps, staleKeys, res)
		return res, nil
	}
	b := &stepBatch{}
	b.add(0, steps, staleKeys, res)
	out := b.flush(ctx, r, env)
	return out[0].Result, out[0].Err
}

// applyStepsKnowing is applySteps for steps whose effect on facts is known
// exactly: predicted holds the facts as they will be once the steps have
// run, and takes the place of reading them again. Until the steps have
// run (queued in a batch) later tasks plan from the predicted facts; if
// the steps fail, the facts are forgotten.
func applyStepsKnowing(ctx context.Context, r Runner, env *Env, steps []Step, predicted map[string]any) (*Result, error) {
	if env.Check || len(steps) == 0 || env.Facts == nil {
		keys := make([]string, 0, len(predicted))
		for k := range predicted {
			keys = append(keys, k)
		}
		return applySteps(ctx, r, env, steps, keys...)
	}
	res := &Result{Changed: true}
	for _, s := range steps {
		res.Changes = append(res.Changes, s.Change)
	}
	b := env.batch
	if b == nil {
		b = &stepBatch{}
	}
	b.addKnown(env.batchTask, steps, predicted, res)
	for k, v := range predicted {
		env.Facts.Set(k, v)
	}
	if env.batch != nil {
		return res, nil
	}
	out := b.flush(ctx, r, env)
	return out[0].Result, out[0].Err
}
