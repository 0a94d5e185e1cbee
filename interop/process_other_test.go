//go:build !linux

package interop

import "syscall"

// childAttrs: without Pdeathsig, children are stopped by t.Cleanup only.
func childAttrs() *syscall.SysProcAttr { return nil }
