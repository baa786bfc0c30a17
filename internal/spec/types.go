// Package spec holds the cluster specification: the one YAML document an
// operator applies (resources, their modes and policies), its strict decoding
// with errors that name the field path and line, validation, and diffs between
// versions. The spec is stored in the replicated state as canonical JSON.
package spec

import (
	"time"
)

// APIVersion is the only spec apiVersion this release understands.
const APIVersion = "paceline/v1"

// Spec is one version of the whole cluster specification.
type Spec struct {
	APIVersion string     `json:"apiVersion" yaml:"apiVersion"`
	Cluster    Cluster    `json:"cluster" yaml:"cluster"`
	Resources  []Resource `json:"resources,omitempty" yaml:"resources"`
}

// Cluster holds cluster-wide policy.
type Cluster struct {
	// Name must equal the name the agents were started with (config clusterName).
	Name string `json:"name" yaml:"name"`
	// NoQuorumPolicy is what a node without quorum does with exclusive
	// resources. This release implements stop (the default: a node that
	// loses its hold lease kills them); freeze, ignore and demote come with
	// fencing.
	NoQuorumPolicy string `json:"noQuorumPolicy,omitempty" yaml:"noQuorumPolicy"`
	// Maintenance, when true, leaves every resource as it is (nothing started or stopped).
	Maintenance bool `json:"maintenance,omitempty" yaml:"maintenance"`
}

// Mode values.
const (
	ModeSingle = "single" // exclusive, active/passive, under the hold lease
	ModeClone  = "clone"  // N replicas spread over nodes
)

// OnFail values.
const (
	OnFailRestart = "restart" // restart in place, move after migrationThreshold failures
	OnFailMigrate = "migrate" // move to another node at the first failure
	OnFailStop    = "stop"    // stop it and leave it stopped
	OnFailIgnore  = "ignore"  // record the failure, do nothing
)

// Resource is one managed resource.
type Resource struct {
	Name string `json:"name" yaml:"name"`
	// Class is the agent class: "process" in this release.
	Class  string `json:"class" yaml:"class"`
	Params Params `json:"params" yaml:"params"`
	// Mode is single (default) or clone.
	Mode string `json:"mode,omitempty" yaml:"mode"`
	// Replicas is the number of clone instances (clone mode; default: one per eligible node).
	Replicas int `json:"replicas,omitempty" yaml:"replicas"`
	// MaxPerNode is the number of clone instances allowed on one node (default 1).
	MaxPerNode int `json:"maxPerNode,omitempty" yaml:"maxPerNode"`
	// Health is an optional active health check.
	Health *Health `json:"health,omitempty" yaml:"health"`
	// OnFail is what a failure triggers (default restart).
	OnFail string `json:"onFail,omitempty" yaml:"onFail"`
	// MigrationThreshold is the number of failures on a node after which the
	// resource moves away from it (default 3; 0 means never move).
	MigrationThreshold *int `json:"migrationThreshold,omitempty" yaml:"migrationThreshold"`
	// FailureTimeout forgets failures older than this (0: never).
	FailureTimeout Duration `json:"failureTimeout,omitempty" yaml:"failureTimeout"`
	// Stickiness is the preference to stay where it runs (default 100).
	Stickiness *int `json:"stickiness,omitempty" yaml:"stickiness"`
	// Nodes optionally restricts where it may run (node names).
	Nodes []string `json:"nodes,omitempty" yaml:"nodes"`
	// Labels optionally restricts placement to nodes carrying all these labels.
	NodeLabels map[string]string `json:"nodeLabels,omitempty" yaml:"nodeLabels"`
	// TargetRole is started (default) or stopped.
	TargetRole string `json:"targetRole,omitempty" yaml:"targetRole"`
}

// Params are the class parameters. For class process:
//
//	command: [argv...]   (required)
//	env: {K: V}
//	dir: /path
//	stopTimeout: 10s     (SIGTERM, then SIGKILL after this)
//	startTimeout: 20s    (health must pass within this, when a health check is set)
type Params struct {
	Command      []string          `json:"command,omitempty" yaml:"command"`
	Env          map[string]string `json:"env,omitempty" yaml:"env"`
	Dir          string            `json:"dir,omitempty" yaml:"dir"`
	StopTimeout  Duration          `json:"stopTimeout,omitempty" yaml:"stopTimeout"`
	StartTimeout Duration          `json:"startTimeout,omitempty" yaml:"startTimeout"`
}

// Health is an active health check; exactly one of HTTP, TCP, Exec is set.
type Health struct {
	HTTP     string   `json:"http,omitempty" yaml:"http"`
	TCP      string   `json:"tcp,omitempty" yaml:"tcp"`
	Exec     []string `json:"exec,omitempty" yaml:"exec"`
	Interval Duration `json:"interval,omitempty" yaml:"interval"`
	Timeout  Duration `json:"timeout,omitempty" yaml:"timeout"`
	// Fall is the number of consecutive failed checks that count as one failure (default 1).
	Fall int `json:"fall,omitempty" yaml:"fall"`
}

// Duration is a time.Duration written as "2s", "100ms", "10m" in YAML and JSON.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
