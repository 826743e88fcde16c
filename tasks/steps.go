package tasks

import (
	"slices"

	"github.com/breakglass/breakglass/internal/engine"
)

// hostStep is one planned change of a module that knows its effect: an
// engine.Step's change and commands, with what predictFacts reads of it.
type hostStep struct {
	change Change
	cmd    string // shell commands over the no-follow helpers, every argument quoted
	// content is the file content a bg_write step writes (it is also in
	// cmd, quoted); nil for other steps.
	content []byte
	// after is what stat reports for change.Path once the step is done,
	// when the module knows it exactly (see predictFacts); nil otherwise.
	after *PathStat
}

// engineSteps returns steps as the plan's engine steps.
func engineSteps(steps []hostStep) []engine.Step {
	if steps == nil {
		return nil
	}
	out := make([]engine.Step, len(steps))
	for i, s := range steps {
		out[i] = engine.Step{Change: s.change, Cmd: s.cmd}
	}
	return out
}

// predictFacts returns a copy of uf as it will be once steps have run, or
// nil when some step's effect is not known exactly. A step's after stat
// replaces the path's stat wherever uf holds it (home, every key file's
// walk); a step writing the key file at content's path also sets its
// content.
func predictFacts(uf *UserFacts, steps []hostStep, contentPath string, content []byte) *UserFacts {
	if !uf.Exists || uf.UID < 0 || uf.GID < 0 {
		return nil
	}
	stats := map[string]PathStat{}
	for _, s := range steps {
		if s.after == nil || s.after.Path != s.change.Path {
			return nil
		}
		stats[s.after.Path] = *s.after
	}
	p := *uf
	p.sshdShared = uf.sshdShared
	if st, ok := stats[p.HomeStat.Path]; ok {
		p.HomeStat = st
	}
	p.KeyFiles = make([]KeyFile, len(uf.KeyFiles))
	for i, k := range uf.KeyFiles {
		k.Walk = slices.Clone(k.Walk)
		for j, w := range k.Walk {
			if st, ok := stats[w.Path]; ok {
				k.Walk[j] = st
			}
		}
		if content != nil && k.Real == contentPath {
			k.Content = slices.Clone(content)
		}
		p.KeyFiles[i] = k
	}
	return &p
}
