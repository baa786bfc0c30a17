package spec

import "time"

// Default values filled in by Defaults.
const (
	DefaultMode               = ModeSingle
	DefaultOnFail             = OnFailRestart
	DefaultMigrationThreshold = 3
	DefaultStickiness         = 100
	DefaultMaxPerNode         = 1
	DefaultTargetRole         = "started"
	DefaultNoQuorumPolicy     = "stop"
	DefaultHealthInterval     = Duration(2 * time.Second)
	DefaultHealthTimeout      = Duration(time.Second)
	DefaultHealthFall         = 1
	DefaultStopTimeout        = Duration(10 * time.Second)
	DefaultStartTimeout       = Duration(20 * time.Second)
	DefaultPromotedMax        = 1
	// DefaultOpTimeout is the timeout of an operation that sets none
	// (Pacemaker's default).
	DefaultOpTimeout = Duration(20 * time.Second)
)

// Defaults fills every unset field that has a default, in place.
func (s *Spec) Defaults() {
	if s.Cluster.NoQuorumPolicy == "" {
		s.Cluster.NoQuorumPolicy = DefaultNoQuorumPolicy
	}
	c := &s.Cluster
	stickiness := DefaultStickiness
	if c.Stickiness != nil {
		stickiness = *c.Stickiness
	}
	setIfZero(&c.PlacementStrategy, PlacementDefault)
	if c.Symmetric == nil {
		c.Symmetric = ptr(true)
	}
	if c.StartFailureIsFatal == nil {
		c.StartFailureIsFatal = ptr(true)
	}
	for i := range s.Resources {
		r := &s.Resources[i]
		setIfZero(&r.Mode, DefaultMode)
		setIfZero(&r.OnFail, DefaultOnFail)
		setIfZero(&r.TargetRole, DefaultTargetRole)
		setIfZero(&r.MaxPerNode, DefaultMaxPerNode)
		if !r.Info().Script() {
			setIfZero(&r.Params.StopTimeout, DefaultStopTimeout)
			setIfZero(&r.Params.StartTimeout, DefaultStartTimeout)
		}
		if r.Mode == ModePromotable {
			setIfZero(&r.PromotedMax, DefaultPromotedMax)
			setIfZero(&r.PromotedMaxPerNode, DefaultPromotedMax)
		}
		setIfZero(&r.MultipleActive, MultipleStopStart)
		if r.MigrationThreshold == nil {
			r.MigrationThreshold = ptr(DefaultMigrationThreshold)
		}
		if r.Stickiness == nil {
			r.Stickiness = ptr(stickiness)
		}
		if h := r.Health; h != nil {
			setIfZero(&h.Interval, DefaultHealthInterval)
			setIfZero(&h.Timeout, DefaultHealthTimeout)
			setIfZero(&h.Fall, DefaultHealthFall)
		}
	}
}

// WithDefaults returns a deep copy of s with defaults filled in; s is unchanged.
func (s *Spec) WithDefaults() *Spec {
	c := s.Clone()
	c.Defaults()
	return c
}

func setIfZero[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

func ptr[T any](v T) *T { return &v }
