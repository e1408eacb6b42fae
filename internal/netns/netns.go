// Package netns gives rstscope's lab isolated Linux network namespaces, so
// scenarios can open ports, provoke resets and capture them without touching
// the host's network.
//
// Two ways in. Command re-executes the current binary as a child in a fresh
// namespace; as root that is a plain network namespace, otherwise a user
// namespace with a network namespace inside, which needs no privileges where
// the system allows unprivileged user namespaces (the child is root inside and
// can bring lo up and capture on it). Do runs a function on an OS thread moved
// into a new network namespace, for root only: tests and sockets made from the
// current process.
//
// A network namespace disappears with the last process, thread or socket
// that refers to it, so nothing needs cleaning up afterwards.
package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// envMarker is set in the environment of children started by Command.
const envMarker = "RSTSCOPE_NETNS"

// Command returns a command that re-executes the current binary
// (/proc/self/exe) with args in a new network namespace, like
// exec.CommandContext. As root it uses CLONE_NEWNET; otherwise
// CLONE_NEWUSER|CLONE_NEWNET with the caller's uid and gid mapped to root
// inside. The child gets RSTSCOPE_NETNS=1 in its environment (see Inside)
// and SIGKILL when its parent thread dies, so it never outlives the parent.
// The child should call SetupLoopback first: lo starts down.
//
// Pdeathsig fires when the OS thread that started the child exits, not the
// process. Go threads only exit when a goroutine ends while locked to one
// (LockOSThread, or Do in this package), so do not Start the command from such
// a goroutine.
//
// The error says why if namespaces are unavailable.
func Command(ctx context.Context, args ...string) (*exec.Cmd, error) {
	if err := check(); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "/proc/self/exe", args...)
	cmd.Env = append(os.Environ(), envMarker+"=1")
	attr := &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNET,
		Pdeathsig:  syscall.SIGKILL,
	}
	if os.Geteuid() != 0 {
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
		attr.GidMappingsEnableSetgroups = false // an unprivileged gid_map needs setgroups denied
	}
	cmd.SysProcAttr = attr
	return cmd, nil
}

// Inside reports whether this process was started by Command.
func Inside() bool { return os.Getenv(envMarker) == "1" }

// Mode describes how Command isolates: "root netns" (root, plain network
// namespace), "user+net namespace" (unprivileged), or "unavailable: " and the
// reason.
func Mode() string {
	if err := check(); err != nil {
		return "unavailable: " + err.Error()
	}
	if os.Geteuid() == 0 && !inUserNamespace() {
		return "root netns"
	}
	return "user+net namespace"
}

// inUserNamespace reports whether this process runs in a user namespace
// other than the initial one (whose uid_map is the identity over all ids):
// uid 0 there is not real root.
func inUserNamespace() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return !(len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295")
}

// check says why Command cannot work here, from the sysctls that govern
// namespaces. It cannot foresee every policy (seccomp, LSMs): the child's
// start then fails with the kernel's error.
func check() error {
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return errors.New("netns: kernel has no network namespaces (/proc/self/ns/net missing)")
	}
	if n, ok := readInt("/proc/sys/user/max_net_namespaces"); ok && n == 0 {
		return errors.New("netns: network namespaces disabled (user.max_net_namespaces = 0)")
	}
	if os.Geteuid() == 0 {
		return nil
	}
	if n, ok := readInt("/proc/sys/user/max_user_namespaces"); ok && n == 0 {
		return errors.New("netns: not root and user namespaces are disabled (user.max_user_namespaces = 0)")
	}
	if n, ok := readInt("/proc/sys/kernel/unprivileged_userns_clone"); ok && n == 0 {
		return errors.New("netns: not root and unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)")
	}
	if n, ok := readInt("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"); ok && n != 0 {
		return errors.New("netns: not root and AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1); run as root")
	}
	return nil
}

func readInt(path string) (int, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return n, err == nil
}

// SetupLoopback brings the loopback interface up. A new network namespace
// has only lo, and it is down: call this first thing inside.
func SetupLoopback() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netns: socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("netns: get lo flags: %w", err)
	}
	if ifr.Uint16()&unix.IFF_UP != 0 {
		return nil
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("netns: bring lo up: %w", err)
	}
	return nil
}

// Do runs fn on an OS thread moved into a new network namespace with lo up,
// and returns fn's error. Sockets fn creates belong to that namespace and
// keep it alive after Do returns; goroutines fn starts run on other threads
// and stay in the caller's namespace, though they may use those sockets. The
// thread is discarded afterwards rather than returned to the Go scheduler.
// Root only (CAP_SYS_ADMIN): a multithreaded process cannot enter a new user
// namespace, so there is no unprivileged variant.
func Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the goroutine's end then terminates the thread,
		// so no other goroutine ever runs in the namespace.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("netns: unshare(CLONE_NEWNET): %w (needs root)", err)
			return
		}
		if err := SetupLoopback(); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Thread runs functions on an OS thread that lives in a network namespace of
// its own, with only lo, brought up. Sockets created by those functions stay
// in the namespace and can be used from any goroutine afterwards. The thread
// is never unlocked, so it exits (leaving the namespace) after Close; the
// namespace disappears with its last socket. Root only (CAP_SYS_ADMIN):
// tests use it to capture real traffic in isolation.
type Thread struct {
	calls chan func()
}

// NewThread creates the namespace and its thread. The error wraps EPERM when
// the process may not create namespaces.
func NewThread() (*Thread, error) {
	t := &Thread{calls: make(chan func())}
	errc := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the namespace
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		if err := SetupLoopback(); err != nil {
			errc <- err
			return
		}
		errc <- nil
		for f := range t.calls {
			f()
		}
	}()
	if err := <-errc; err != nil {
		return nil, err
	}
	return t, nil
}

// Do runs f on the namespace's thread and waits for it.
func (t *Thread) Do(f func()) {
	done := make(chan struct{})
	t.calls <- func() { defer close(done); f() }
	<-done
}

// Close ends the thread.
func (t *Thread) Close() { close(t.calls) }
