package tasks

import "github.com/breakglass/breakglass/internal/engine"

// The engine's vocabulary under the names modules plan in: a module reads
// facts (Query, Facts, Conn) about the host a Runner reaches, as Env
// describes the run, and returns a Plan of Steps, a Guard and Ops (a
// TxnChange); the runner has internal/engine execute it and reports the
// Result. Modules are Planners (engine.Planner).
type (
	Runner      = engine.Runner
	Env         = engine.Env
	Conn        = engine.Conn
	Login       = engine.Login
	LoginDialer = engine.LoginDialer
	Path        = engine.Path
	Query       = engine.Query
	Facts       = engine.Facts
	Result      = engine.Result
	Change      = engine.Change
	Finding     = engine.Finding
	Access      = engine.Access
	Plan        = engine.Plan
	Guard       = engine.Guard
	Op          = engine.Op
)
