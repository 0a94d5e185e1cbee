//go:build !linux

package proc

import "syscall"

// childAttrs: elsewhere children are stopped by the benchmark's cleanup only
// (the measurements need Linux's /proc anyway).
func childAttrs() *syscall.SysProcAttr { return nil }
