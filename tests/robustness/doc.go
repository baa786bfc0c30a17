// Package robustness is paceline's fault-injection suite: a lab cluster of
// three control hosts and a client host runs exclusive resources (a vip and
// an active/passive process writing to a witness) while a seeded random
// schedule crashes, pauses, restarts and partitions hosts and a writer
// applies spec changes; a checker then verifies the invariants of
// DESIGN §3 (I1 from the witness log and from ARP answers seen by the
// client, I2 for every acknowledged spec write, I4 from the epochs in the
// witness log). See docs/robustness.md.
//
//	go test ./tests/robustness                                  (as root, ~60 s of faults)
//	go test ./tests/robustness -v -robustness.duration=10m -robustness.seed=42
package robustness
