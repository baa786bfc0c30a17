package api

// ActiveReports is the answer of GET /v1/internal/reports (join token,
// leader only): what every node last reported running to the leader's
// coordinator (each node's Renew.Active, with slots, states and epochs).
// Followers fetch it to answer discovery queries (internal/discovery)
// from their own replicated state plus these reports.
type ActiveReports struct {
	// Leader is the name of the node that answered (the leader).
	Leader string `json:"leader"`
	// Nodes maps a node name to its last reported instances.
	Nodes map[string][]ActiveInstance `json:"nodes"`
}
