// Command pause is the sandbox ("pause") container of the Kubernetes
// clusters berth's end-to-end tests start: it holds the Pod's namespaces
// open, reaps the zombies it inherits as PID 1, and exits on SIGTERM or
// SIGINT. It is a module of its own so that it stays out of berth's build.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
