package interop

import "syscall"

// childAttrs makes the kernel kill a child with the test binary, even if the
// binary dies without running its cleanups (e.g. go test's -timeout): no
// Hydra or broker outlives the run.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
