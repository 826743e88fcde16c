package tasks

import "testing"

// TestReviewAgainPlanNeverMayBatch: the runner flushes queued steps before
// a plan only when !p.MayBatch(); Executor.Execute runs a plan with Again
// at once, never queued. A plan with Again and only steps (no ops, no
// guard) would then run before the steps earlier tasks queued.
func TestReviewAgainPlanNeverMayBatch(t *testing.T) {
	p := &Plan{Steps: []hostStep{{change: Change{What: "x"}, cmd: "true"}}, Again: true}
	if p.MayBatch() {
		t.Error("a plan that looks Again says MayBatch: the runner would not flush the queue before it, and Execute runs it at once, ahead of earlier queued tasks")
	}
}
