//go:build linux

package main

import "syscall"

// hostAttr: the host dies with the shim, even when the shim is killed alone (a process group signal from the CLI
// reaches both anyway).
func hostAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
