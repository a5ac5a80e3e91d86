// Command pause is the process of a pod's sandbox ("pause") container, a Go port of Kubernetes'
// build/pause/linux/pause.c: the real-node e2e tier has no registry to pull
// registry.k8s.io/pause from, so it builds this static binary into a local image instead.
//
// As PID 1 of the pod's PID namespace it holds the namespaces open, reaps the zombies that
// orphaned processes leave when PID namespaces are shared, and exits 0 when the runtime stops the
// sandbox with SIGINT or SIGTERM. It does nothing else.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// version is the upstream pause release whose behaviour this reproduces (the one Kubernetes
// v1.33 defaults to), printed by -v as pause.c prints its own.
const version = "3.10"

func main() {
	for _, arg := range os.Args[1:] {
		if strings.EqualFold(arg, "-v") { // pause.c compares with strcasecmp
			fmt.Printf("pause.go %s (a Go port of pause.c)\n", version)
			return
		}
	}
	if os.Getpid() != 1 {
		// Not an error: pause.c only warns too, as it is also run outside sandboxes.
		fmt.Fprintln(os.Stderr, "Warning: pause should be the first process")
	}

	// One buffered channel for all three: a SIGCHLD that arrives while the buffer is full is
	// dropped, which is harmless because each reap drains every exited child, not just one.
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig == syscall.SIGCHLD {
			reap()
			continue
		}
		fmt.Fprintf(os.Stderr, "Shutting down, got signal: %v\n", sig)
		os.Exit(0)
	}
}

// reap waits for every child that has exited, without blocking on those still running.
func reap() {
	for {
		pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil { // 0: children left but none exited; ECHILD: no children
			return
		}
	}
}
