//go:build !linux

package main

import "syscall"

// hostAttr: elsewhere the CLI's process-group signals are what end the host with the shim.
func hostAttr() *syscall.SysProcAttr { return nil }
