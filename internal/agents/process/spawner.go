package process

import (
	"os/exec"
	"runtime"
	"sync"
)

// Why a spawner goroutine exists
//
// Every child is started with SysProcAttr.Pdeathsig = SIGKILL so that it
// dies together with the agent (a crashed agent must not leave a resource
// running that the cluster believes stopped, see DESIGN.md §3, I1). Linux
// delivers the "parent death" signal when the *thread* that forked the child
// exits, not when the process does (see the caveat on
// syscall.SysProcAttr.Pdeathsig). The Go runtime may terminate an OS thread
// at any time, e.g. when a goroutine that called runtime.LockOSThread
// returns without unlocking; a child forked from such a thread would then be
// SIGKILLed for no reason.
//
// So all forks (cmd.Start) of this package happen on one dedicated
// goroutine that locks itself to its OS thread and never unlocks or
// returns: that thread lives exactly as long as the agent process, which is
// precisely the lifetime Pdeathsig should track. The goroutine is started
// lazily on first use and is intentionally never stopped (tests tell goleak
// to ignore spawnerLoop).

type spawnRequest struct {
	cmd  *exec.Cmd
	errc chan error
}

var (
	spawnerOnce sync.Once
	spawnerCh   chan spawnRequest
)

// Spawn runs cmd.Start on the spawner thread and returns its error. Use it
// for every child that sets SysProcAttr.Pdeathsig (the script classes'
// action processes do, see agents.RunCommand): only a fork from a thread
// that lives as long as the agent makes Pdeathsig track the agent.
func Spawn(cmd *exec.Cmd) error { return spawn(cmd) }

// spawn runs cmd.Start on the spawner thread and returns its error.
func spawn(cmd *exec.Cmd) error {
	spawnerOnce.Do(func() {
		spawnerCh = make(chan spawnRequest)
		go spawnerLoop(spawnerCh)
	})
	req := spawnRequest{cmd: cmd, errc: make(chan error, 1)}
	spawnerCh <- req
	return <-req.errc
}

// spawnerLoop is the body of the spawner goroutine. It never returns and
// never calls runtime.UnlockOSThread, so its OS thread is never reused by
// other goroutines and never exits while the program runs.
func spawnerLoop(reqs <-chan spawnRequest) {
	runtime.LockOSThread()
	for req := range reqs {
		req.errc <- req.cmd.Start()
	}
	// Not reached: reqs is never closed. Should it ever be, block forever
	// rather than return, because returning while locked would make the
	// runtime terminate this thread and Pdeathsig-kill every child.
	select {}
}
