package inventory

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/go-multierror"

	"github.com/breakglass/breakglass/internal/yamlx"
)

// Host is one inventory host with its variables merged.
type Host struct {
	Name string
	// Vars are the host's variables, merged by Ansible's precedence, lowest
	// first: the all group's inventory vars; the other groups' inventory vars
	// (parents before children, siblings alphabetically, or by
	// ansible_group_priority); group_vars/all files; group_vars/GROUP files
	// in the same group order; the host's own inventory vars; host_vars
	// files. Values are string, int, bool, float64, []any, map[string]any,
	// or nil (YAML null). Merging is shallow, as Ansible's default
	// hash_behaviour=replace. The map is the host's own, but nested lists
	// and maps may be shared with other hosts: treat them as read-only.
	Vars map[string]any
	// Groups is every group the host is in, ancestors and "all" included,
	// sorted. A host that is in no group but "all" is in "ungrouped".
	// (Ansible's magic variables — inventory_hostname, group_names — are
	// not in Vars: they are the caller's to add, from Name and Groups.)
	Groups []string
}

// Inventory is a loaded inventory. It is read-only and safe for concurrent
// use.
type Inventory struct {
	hosts      []*Host
	index      map[string]int   // host name → position in hosts
	groups     []string         // sorted
	groupHosts map[string][]int // group → hosts (positions, ascending), descendants included
	warnings   []string
}

// Hosts returns every host, in the order the inventory first named them.
func (inv *Inventory) Hosts() []*Host { return slices.Clone(inv.hosts) }

// Host returns the host called name.
func (inv *Inventory) Host(name string) (*Host, bool) {
	i, ok := inv.index[name]
	if !ok {
		return nil, false
	}
	return inv.hosts[i], true
}

// Groups returns the names of every group, "all" and "ungrouped" included,
// sorted.
func (inv *Inventory) Groups() []string { return slices.Clone(inv.groups) }

// Warnings returns what was read but skipped without failing the load:
// Ansible Vault–encrypted files and values, which breakglass cannot decrypt.
func (inv *Inventory) Warnings() []string { return slices.Clone(inv.warnings) }

// Limits that keep hostile input from exhausting memory or time.
const (
	maxRangeHosts = 100_000    // hosts from one host pattern such as web[1:100000]
	maxHosts      = 250_000    // hosts in one inventory: 10× the largest fleets we serve
	maxEntries    = 10_000_000 // Σ over hosts of len(Vars)+len(Groups)
	maxErrors     = 100        // errors kept; the rest are counted
	maxNesting    = 1000       // nesting of YAML/JSON values and groups
	maxFileSize   = 64 << 20   // bytes of one inventory or vars file, or script output
)

// maxYAMLNodes is the YAML node visits allowed per file beyond 4 per byte
// of the file (see newWalker). A variable so tests can lower it.
var maxYAMLNodes = 1_000_000

// pos is where something was read.
type pos struct {
	file      string
	line, col int
}

func (p pos) errorf(format string, args ...any) error {
	return &yamlx.PosError{File: p.file, Line: p.line, Column: p.col, Msg: fmt.Sprintf(format, args...)}
}

type hostData struct {
	name string
	idx  int
	vars map[string]any
	// direct holds the groups the inventory put the host in. It may hold
	// duplicates until compact, which sorts it; appending and compacting
	// now and then keeps a host in thousands of groups cheap.
	direct    []string
	compacted int // len(direct) after the last compact
}

func (h *hostData) addGroup(group string) {
	if n := len(h.direct); n > 0 && h.direct[n-1] == group {
		return
	}
	h.direct = append(h.direct, group)
	if len(h.direct) >= 2*h.compacted+16 {
		h.compact()
	}
}

// compact sorts direct and drops duplicates.
func (h *hostData) compact() {
	sort.Strings(h.direct)
	h.direct = slices.Compact(h.direct)
	h.compacted = len(h.direct)
}

type groupData struct {
	name     string
	vars     map[string]any
	priority int
	children []string
	childSet map[string]pos // child → where the edge was declared
	parents  []string
}

// builder collects hosts, groups and vars from every source, then merges
// them in finish.
type builder struct {
	hosts    map[string]*hostData
	order    []*hostData
	groups   map[string]*groupData
	varDirs  []string // directories whose group_vars/ and host_vars/ apply, in source order
	errs     []error
	seenErrs map[string]bool // messages already reported
	dropped  int             // errors beyond maxErrors
	warnings []string
	tooMany  bool // maxHosts reached and reported
}

func newBuilder() *builder {
	b := &builder{hosts: map[string]*hostData{}, groups: map[string]*groupData{}}
	b.group("all")
	b.group("ungrouped")
	b.addChild("all", "ungrouped", pos{})
	return b
}

func (b *builder) fail(err error) {
	msg := err.Error()
	if b.seenErrs[msg] {
		return
	}
	if b.seenErrs == nil {
		b.seenErrs = map[string]bool{}
	}
	b.seenErrs[msg] = true
	if len(b.errs) >= maxErrors {
		b.dropped++
		return
	}
	b.errs = append(b.errs, err)
}

func (b *builder) warn(format string, args ...any) {
	if len(b.warnings) < maxErrors {
		b.warnings = append(b.warnings, fmt.Sprintf(format, args...))
	}
}

// err returns every collected error as one *multierror.Error, or nil.
func (b *builder) err() error {
	if len(b.errs) == 0 {
		return nil
	}
	errs := b.errs
	if b.dropped > 0 {
		errs = append(slices.Clone(errs), fmt.Errorf("and %d more errors", b.dropped))
	}
	return &multierror.Error{Errors: errs, ErrorFormat: listErrors}
}

// listErrors formats errors one a line, without go-multierror's header, so
// that each line reads file:line:col: message.
func listErrors(errs []error) string {
	lines := make([]string, len(errs))
	for i, e := range errs {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// group returns the group called name, creating it. The name must already
// be valid.
func (b *builder) group(name string) *groupData {
	g := b.groups[name]
	if g == nil {
		g = &groupData{name: name, vars: map[string]any{}, priority: 1, childSet: map[string]pos{}}
		b.groups[name] = g
	}
	return g
}

// addGroup validates name and returns its group, or nil after reporting.
func (b *builder) addGroup(name string, p pos) *groupData {
	if err := validGroupName(name); err != nil {
		b.fail(p.errorf("%v", err))
		return nil
	}
	return b.group(name)
}

func (b *builder) addChild(parent, child string, p pos) {
	if parent == child {
		b.fail(p.errorf("group %q cannot be its own child", child))
		return
	}
	pg, cg := b.group(parent), b.group(child)
	if _, ok := pg.childSet[child]; ok {
		return
	}
	pg.childSet[child] = p
	pg.children = append(pg.children, child)
	cg.parents = append(cg.parents, parent)
}

// addHost adds the host (name already valid) to group and returns it.
func (b *builder) addHost(name, group string, p pos) *hostData {
	h := b.hosts[name]
	if h == nil {
		if len(b.order) >= maxHosts {
			if !b.tooMany {
				b.tooMany = true
				b.fail(p.errorf("more than %d hosts", maxHosts))
			}
			return nil
		}
		h = &hostData{name: name, idx: len(b.order), vars: map[string]any{}}
		b.hosts[name] = h
		b.order = append(b.order, h)
	}
	if group != "" {
		b.group(group)
		h.addGroup(group)
	}
	return h
}

// setGroupVar sets an inventory variable of a group. ansible_group_priority
// is not a variable but the group's merge priority, as in Ansible.
func (b *builder) setGroupVar(g *groupData, key string, v any, p pos) {
	if key == "ansible_group_priority" {
		n, ok := toInt(v)
		if !ok {
			b.fail(p.errorf("group %q: ansible_group_priority must be an integer, got %v", g.name, v))
			return
		}
		g.priority = n
		return
	}
	g.vars[key] = v
}

func toInt(v any) (int, bool) {
	switch v := v.(type) {
	case int:
		return v, true
	case float64:
		return int(v), v == math.Trunc(v) && math.Abs(v) < 1<<53
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(v))
		return n, err == nil
	}
	return 0, false
}

// validVarName checks a top-level variable name: Ansible itself accepts any
// key here, but an empty name or one with spaces or control characters is
// always a mistake and could not be used in a template.
func validVarName(k string) error {
	if k == "" {
		return fmt.Errorf("empty variable name")
	}
	for _, r := range k {
		if r <= ' ' || r == 0x7f || r == 0xfffd {
			return fmt.Errorf("invalid variable name %q", k)
		}
	}
	return nil
}

// finish reconciles groups as Ansible does, merges every host's variables
// and returns the inventory, or every error found.
func (b *builder) finish() (*Inventory, error) {
	if len(b.errs) > 0 {
		return nil, b.err()
	}
	// Every group without a parent is a child of all.
	names := make([]string, 0, len(b.groups))
	for n := range b.groups {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if n != "all" && len(b.groups[n].parents) == 0 {
			b.addChild("all", n, pos{})
		}
	}
	depth, err := b.depths(names)
	if err != nil {
		b.fail(err)
		return nil, b.err()
	}
	// A host in no group but all is in ungrouped; a host that is in another
	// group is not.
	for _, h := range b.order {
		h.compact()
		only := true
		for _, g := range h.direct {
			if g != "all" && g != "ungrouped" {
				only = false
				break
			}
		}
		if only {
			if !slices.Contains(h.direct, "ungrouped") {
				h.direct = append(h.direct, "ungrouped")
				h.compact()
			}
		} else {
			h.direct = slices.DeleteFunc(h.direct, func(g string) bool { return g == "ungrouped" })
		}
	}

	vf := newVarFiles(b)
	inv := &Inventory{
		hosts:      make([]*Host, len(b.order)),
		index:      make(map[string]int, len(b.order)),
		groups:     names,
		groupHosts: map[string][]int{},
	}
	// First pass: merge the groups and group vars of each distinct set of
	// direct groups once, and refuse an inventory whose hosts would hold
	// too much before copying anything per host.
	type merged struct {
		groups []string
		vars   map[string]any
	}
	memo := map[string]*merged{}
	sets := make([]*merged, len(b.order))
	tooLarge := func() (*Inventory, error) {
		b.fail(fmt.Errorf("inventory too large: more than %d host-group memberships and variables", maxEntries))
		return nil, b.err()
	}
	entries := 0
	for i, h := range b.order {
		key := strings.Join(h.direct, "\x00") // sorted by compact
		m := memo[key]
		if m == nil {
			closure, ok := b.closure(h.direct, maxEntries-entries)
			if !ok {
				return tooLarge()
			}
			m = &merged{groups: closure, vars: b.groupVars(closure, depth, vf)}
			memo[key] = m
		}
		sets[i] = m
		if entries += len(m.vars) + len(h.vars) + len(m.groups); entries > maxEntries {
			return tooLarge()
		}
	}
	// Second pass: each host's own copy of its vars and groups.
	entries = 0
	for i, h := range b.order {
		m := sets[i]
		vars := make(map[string]any, len(m.vars)+len(h.vars))
		for k, v := range m.vars {
			vars[k] = v
		}
		for k, v := range h.vars {
			vars[k] = v
		}
		for _, d := range b.varDirs {
			for k, v := range vf.vars(d, "host_vars", h.name) {
				vars[k] = v
			}
		}
		if entries += len(vars) + len(m.groups); entries > maxEntries {
			return tooLarge()
		}
		inv.hosts[i] = &Host{Name: h.name, Vars: vars, Groups: slices.Clone(m.groups)}
		inv.index[h.name] = i
		for _, g := range m.groups {
			inv.groupHosts[g] = append(inv.groupHosts[g], i)
		}
	}
	if len(b.errs) > 0 {
		return nil, b.err()
	}
	inv.warnings = b.warnings
	return inv, nil
}

// depths returns each group's depth — its longest distance from all, as
// Ansible computes it — or an error naming a cycle.
func (b *builder) depths(names []string) (map[string]int, error) {
	// Kahn's algorithm over the parent→child edges: a group is placed once
	// every parent is, so its depth is final; groups left over sit on a cycle.
	indeg := make(map[string]int, len(names))
	for _, n := range names {
		indeg[n] = len(b.groups[n].parents)
	}
	depth := map[string]int{"all": 0}
	queue := []string{}
	for _, n := range names {
		if indeg[n] == 0 {
			queue = append(queue, n)
			depth[n] = 0
		}
	}
	done := 0
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		done++
		for _, c := range b.groups[n].children {
			if d := depth[n] + 1; d > depth[c] {
				depth[c] = d
			}
			if indeg[c]--; indeg[c] == 0 {
				queue = append(queue, c)
			}
		}
	}
	if done == len(names) {
		return depth, nil
	}
	// Name one cycle: walk parents among the groups left over until a group
	// repeats.
	var start string
	for _, n := range names {
		if indeg[n] > 0 {
			start = n
			break
		}
	}
	seen := map[string]int{}
	path := []string{}
	for n := start; ; {
		if i, ok := seen[n]; ok {
			cycle := append(slices.Clone(path[i:]), n)
			slices.Reverse(cycle) // parent → child
			p := b.groups[cycle[0]].childSet[cycle[1]]
			return nil, p.errorf("groups form a cycle: %s", strings.Join(cycle, " → "))
		}
		seen[n] = len(path)
		path = append(path, n)
		for _, p := range b.groups[n].parents {
			if indeg[p] > 0 {
				n = p
				break
			}
		}
	}
}

// closure returns the sorted set of direct and their ancestors, or false if
// it would exceed budget entries.
func (b *builder) closure(direct []string, budget int) ([]string, bool) {
	seen := map[string]bool{}
	stack := slices.Clone(direct)
	for len(stack) > 0 {
		g := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[g] {
			continue
		}
		seen[g] = true
		if len(seen) > budget {
			return nil, false
		}
		stack = append(stack, b.groups[g].parents...)
	}
	out := make([]string, 0, len(seen))
	for g := range seen {
		out = append(out, g)
	}
	sort.Strings(out)
	return out, true
}

// groupVars merges the group variables of a host in groups, lowest
// precedence first, as Ansible's default VARIABLE_PRECEDENCE does:
// all_inventory, groups_inventory, all_plugins_inventory,
// groups_plugins_inventory.
func (b *builder) groupVars(groups []string, depth map[string]int, vf *varFiles) map[string]any {
	sorted := make([]*groupData, 0, len(groups))
	for _, g := range groups {
		if g != "all" {
			sorted = append(sorted, b.groups[g])
		}
	}
	sort.Slice(sorted, func(i, j int) bool {
		a, c := sorted[i], sorted[j]
		if depth[a.name] != depth[c.name] {
			return depth[a.name] < depth[c.name]
		}
		if a.priority != c.priority {
			return a.priority < c.priority
		}
		return a.name < c.name
	})
	out := map[string]any{}
	set := func(m map[string]any) {
		for k, v := range m {
			out[k] = v
		}
	}
	set(b.groups["all"].vars)
	for _, g := range sorted {
		set(g.vars)
	}
	for _, d := range b.varDirs {
		set(vf.vars(d, "group_vars", "all"))
	}
	for _, d := range b.varDirs {
		for _, g := range sorted {
			set(vf.vars(d, "group_vars", g.name))
		}
	}
	return out
}
