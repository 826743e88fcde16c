package tasks

import (
	"context"
	"testing"
)

// TestReviewCommandBackgroundOutput: a command that leaves a process
// writing to its stdout (a daemon started without redirecting it, `x &`)
// grows the output file between command.sh's `wc -c` and its `cat`, so
// the frame holds more bytes than its header says. The command ran (exit
// 0, the host changed) but the task fails with a parse error and reports
// no change.
func TestReviewCommandBackgroundOutput(t *testing.T) {
	c := mustCommand(t, `{cmd: 'echo started; (i=0; while [ $i -lt 3000 ]; do echo bg; i=$((i+1)); done) &'}`)
	for i := 0; i < 5; i++ {
		res, err := runModule(context.Background(), scLocalShell{}, &Env{}, c)
		if err != nil || res == nil || !res.Changed {
			t.Fatalf("run %d: a command that ran and exited 0: res %+v, err %v", i, res, err)
		}
	}
}
