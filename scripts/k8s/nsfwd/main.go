// Command nsfwd forwards TCP connections between the network namespace it
// runs in (the host's) and another one (a test cluster's), without routes,
// addresses or interfaces between the two: it holds a listening socket in
// one namespace and dials in the other.
//
//	nsfwd -netns /run/netns/NAME [-pidfile FILE] FORWARD...
//
// FORWARD is SIDE:LISTEN=SIDE:DIAL, SIDE being "host" (this process's
// namespace) or "ns" (the -netns one), e.g.
//
//	host:127.0.0.1:6443=ns:127.0.0.1:6443    the cluster's API server, from the host
//	ns:127.0.0.1:5000=host:127.0.0.1:5000    a registry on the host, from the cluster
//
// A socket belongs to the namespace of the thread that created it, so nsfwd
// creates sockets of the other namespace on a locked OS thread that has
// entered it (setns(2)) and is thrown away afterwards. It prints "ready"
// once every listener is open, and runs until SIGTERM or SIGINT.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// side is one end of a forward: an address in one of the two namespaces.
type side struct {
	inNS bool
	addr string
}

func parseSide(s string) (side, error) {
	where, addr, ok := strings.Cut(s, ":")
	if !ok || addr == "" {
		return side{}, fmt.Errorf("%q: want host:ADDR or ns:ADDR", s)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return side{}, fmt.Errorf("%q: %w", s, err)
	}
	switch where {
	case "host":
		return side{addr: addr}, nil
	case "ns":
		return side{inNS: true, addr: addr}, nil
	}
	return side{}, fmt.Errorf("%q: side %q is neither host nor ns", s, where)
}

// inNamespace runs f on a fresh OS thread that has joined the namespace at
// path; the thread is discarded afterwards (the goroutine exits locked).
func inNamespace(path string, f func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread has left the process's namespace
		// and must end with this goroutine.
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open %s: %w", path, err)
			return
		}
		_, _, e := syscall.RawSyscall(sysSetns, uintptr(fd), syscall.CLONE_NEWNET, 0)
		syscall.Close(fd)
		if e != 0 {
			errc <- fmt.Errorf("setns %s: %w", path, e)
			return
		}
		f()
		errc <- nil
	}()
	return <-errc
}

type forwarder struct{ netns string }

func (fw forwarder) listen(s side) (net.Listener, error) {
	if !s.inNS {
		return net.Listen("tcp", s.addr)
	}
	var l net.Listener
	var err error
	if nerr := fw.inNamespace(func() { l, err = net.Listen("tcp", s.addr) }); nerr != nil {
		return nil, nerr
	}
	return l, err
}

func (fw forwarder) dial(s side) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if !s.inNS {
		return d.Dial("tcp", s.addr)
	}
	var c net.Conn
	var err error
	if nerr := fw.inNamespace(func() { c, err = d.Dial("tcp", s.addr) }); nerr != nil {
		return nil, nerr
	}
	return c, err
}

func (fw forwarder) inNamespace(f func()) error { return inNamespace(fw.netns, f) }

// serve accepts on l and copies each connection to and from a dial of to.
func (fw forwarder) serve(l net.Listener, to side) {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			log.Printf("accept on %s: %v", l.Addr(), err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go fw.pipe(c, to)
	}
}

func (fw forwarder) pipe(c net.Conn, to side) {
	defer c.Close()
	u, err := fw.dial(to)
	if err != nil {
		log.Printf("%s: %v", c.LocalAddr(), err)
		return
	}
	defer u.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		io.Copy(u, c)
		u.(*net.TCPConn).CloseWrite()
	}()
	io.Copy(c, u)
	c.(*net.TCPConn).CloseWrite()
	wg.Wait()
}

func main() {
	log.SetFlags(log.LstdFlags | log.LUTC)
	log.SetPrefix("nsfwd: ")
	netns := flag.String("netns", "", "the other network namespace (a file such as /run/netns/NAME)")
	pidfile := flag.String("pidfile", "", "write the process id here")
	flag.Parse()
	if *netns == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: nsfwd -netns PATH [-pidfile FILE] host|ns:LISTEN=host|ns:DIAL...")
		os.Exit(2)
	}
	fw := forwarder{netns: *netns}
	for _, arg := range flag.Args() {
		from, to, ok := strings.Cut(arg, "=")
		if !ok {
			log.Fatalf("%q: want SIDE:LISTEN=SIDE:DIAL", arg)
		}
		lf, err := parseSide(from)
		if err != nil {
			log.Fatal(err)
		}
		lt, err := parseSide(to)
		if err != nil {
			log.Fatal(err)
		}
		l, err := fw.listen(lf)
		if err != nil {
			log.Fatalf("listen %s: %v", from, err)
		}
		go fw.serve(l, lt)
	}
	if *pidfile != "" {
		if err := os.WriteFile(*pidfile, []byte(fmt.Sprintln(os.Getpid())), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
