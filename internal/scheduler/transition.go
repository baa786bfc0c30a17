package scheduler

// Action kinds of a transition.
const (
	OpStart   = "start"
	OpStop    = "stop"
	OpPromote = "promote"
	OpDemote  = "demote"
)

// Action is one step of a transition: Op of a slot on Node. After lists
// the IDs of actions that must complete first.
type Action struct {
	ID       int
	Op       string
	Slot     string // slot key, "name:N"
	Resource string
	Node     string
	After    []int
	// Reason says why (for apply --dry-run and simulate).
	Reason string
}

// Transition is the ordered set of actions from the current state to the
// placement. Actions are sorted so that every action comes after those it
// depends on.
type Transition struct {
	Actions []Action
}

// Plan computes the placement and the transition that reaches it from the
// current state in the input.
func Plan(in Input) (Output, Transition) {
	out := Place(in)
	return out, transition(in, out)
}

func transition(in Input, out Output) Transition {
	var t Transition
	return t
}
