// Package engine carries out plans on one host: the execute side of
// breakglass's facts → plan → execute seam.
//
// Package tasks holds the modules; each one names the facts it reads
// (Query) and makes a Plan from them with no I/O (a Planner). The runner
// has an Executor carry every plan out, in the order it owns: gather (the
// queries of every task in one round trip, into the Facts cache) → plan →
// batch (the steps of consecutive plans that may join one round trip) →
// guard (a removal's fresh logins) → execute (the steps over the one
// no-follow writer, nofollow.sh, then the ops) → report (Result).
//
// What the engine owns, by file:
//   - types.go: the vocabulary modules plan in (Env, Runner, Query,
//     Facts, Result, Change, Finding, Access, Login, Path, Conn).
//   - plan.go, executor.go: Plan, Step, Guard, Op, Planner; the Executor.
//   - gather.go: gathering facts, the preludes queries of one kind share
//     (Shared), and the facts read again after a batch (Rereader).
//   - steps.go, batch.go: running steps, alone or batched.
//   - prove.go, verify.go, penalty.go: the prover (one fresh login and
//     the probe), the fresh-login op (VerifyLogins) and the login gate
//     that keeps sshd's PerSourcePenalties from turning into a false
//     result.
//   - txn.go, txn_change.go: the self-reverting transaction and its op.
//   - backup.go, scripts.go: the writer's names and the shell libraries
//     modules' own scripts build on.
//
// The engine knows nothing of any module or of the facts' meaning: what
// it needs of facts it asks through small interfaces their values may
// implement (SSHDView, StartupLimits, Rereader), and module-specific
// judgement travels in the plan as data (a Step's Report, a Doubt).
package engine
