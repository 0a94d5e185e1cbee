package proc

import "syscall"

// childAttrs puts a child in its own process group (Ctrl-C reaches the
// benchmark only, which stops children in order) and kills it if the
// benchmark dies.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
