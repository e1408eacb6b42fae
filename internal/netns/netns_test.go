package netns

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// roleEnv tells a re-executed test binary what to do instead of running tests:
// "child" is the process Command starts; "unpriv" is an unprivileged parent
// (started as nobody) that runs a child through Command itself.
const roleEnv = "NETNS_TEST_ROLE"

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "child":
		if err := childMain(); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	case "sleeper": // a child that waits to be killed
		fmt.Println(os.Getpid())
		time.Sleep(time.Hour) // not an assertion: the test kills it long before
		os.Exit(1)
	case "middle": // starts a sleeper through Command, reports its pid, waits
		cmd, err := Command(context.Background(), "-test.run=^$")
		if err != nil {
			fmt.Fprintln(os.Stderr, "middle:", err)
			os.Exit(1)
		}
		cmd.Env = append(cmd.Env, roleEnv+"=sleeper")
		cmd.Stdout = os.Stdout
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "middle:", err)
			os.Exit(1)
		}
		cmd.Wait()
		os.Exit(0)
	case "unpriv":
		if err := unprivMain(); err != nil {
			fmt.Fprintln(os.Stderr, "unpriv:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// netnsID names the namespace of the calling thread, e.g. "net:[4026531840]".
func netnsID() (string, error) { return os.Readlink("/proc/thread-self/ns/net") }

// childMain runs inside the namespace: it brings lo up, checks it is up,
// talks to itself over 127.0.0.5 and prints its namespace.
func childMain() error {
	if !Inside() {
		return errors.New("Inside() is false in a child started by Command")
	}
	if err := SetupLoopback(); err != nil {
		return err
	}
	if up, err := loUp(); err != nil || !up {
		return fmt.Errorf("lo not up after SetupLoopback (err %v)", err)
	}
	if err := pingPong("127.0.0.5"); err != nil {
		return err
	}
	id, err := netnsID()
	if err != nil {
		return err
	}
	fmt.Printf("netns=%s\n", id)
	return nil
}

// unprivMain runs as an unprivileged user: it starts a child through Command
// (which must take the user+net namespace path) and checks its report.
func unprivMain() error {
	if os.Geteuid() == 0 {
		return errors.New("unpriv role running as root")
	}
	if m := Mode(); m != "user+net namespace" {
		fmt.Printf("mode=%s\n", m)
		return nil
	}
	id, err := runChild(context.Background())
	if err != nil {
		return err
	}
	own, err := netnsID()
	if err != nil {
		return err
	}
	if id == own {
		return fmt.Errorf("child in the parent's namespace %s", own)
	}
	fmt.Println("ok")
	return nil
}

// runChild starts the test binary through Command in child role and returns
// the namespace it reported.
func runChild(ctx context.Context) (string, error) {
	cmd, err := Command(ctx, "-test.run=^$")
	if err != nil {
		return "", err
	}
	cmd.Env = append(cmd.Env, roleEnv+"=child")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("child: %v: %s", err, stderr.String())
	}
	id, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "netns=")
	if !ok {
		return "", fmt.Errorf("child printed %q", out)
	}
	return id, nil
}

// loUp reports whether lo has IFF_UP in the calling thread's namespace.
func loUp() (bool, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return false, err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return false, err
	}
	return ifr.Uint16()&unix.IFF_UP != 0, nil
}

// pingPong listens on addr, connects to it and echoes one message, proving
// the address is reachable.
func pingPong(addr string) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "ping\n" {
		return fmt.Errorf("echo over %s: %q, %v", addr, line, err)
	}
	return nil
}

// TestCommand runs a child through Command on whichever path this user gets
// (root: CLONE_NEWNET; otherwise user+net namespace).
func TestCommand(t *testing.T) {
	if m := Mode(); strings.HasPrefix(m, "unavailable") {
		t.Skip(m)
	}
	t.Logf("mode: %s", Mode())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := runChild(ctx)
	if err != nil {
		t.Fatal(err)
	}
	own, err := netnsID()
	if err != nil {
		t.Fatal(err)
	}
	if id == own {
		t.Fatalf("child ran in the parent's network namespace %s", own)
	}
}

// TestCommandUnprivileged checks the user+net namespace path: as root, it
// starts a copy of the test binary as nobody, which then uses Command itself.
func TestCommandUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a process as nobody (TestCommand covers the unprivileged path when run as a user)")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// go test's build directory is private to root: copy the binary where
	// nobody can execute it.
	dir, err := os.MkdirTemp("", "netns-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "netns.test")
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-test.run=^$")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), roleEnv+"=unpriv")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: 65534, Gid: 65534},
		Pdeathsig:  syscall.SIGKILL,
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("unprivileged parent: %v\n%s", err, out)
	}
	switch s := strings.TrimSpace(string(out)); {
	case s == "ok":
	case strings.HasPrefix(s, "mode="):
		t.Skipf("unprivileged namespaces not available here: %s", s)
	default:
		t.Fatalf("unprivileged parent printed %q", s)
	}
}

// TestDo checks that fn runs in a different namespace with lo up, that a
// listener there is reachable, and that the caller's namespace is untouched.
func TestDo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("Do needs root (CAP_SYS_ADMIN for unshare(CLONE_NEWNET))")
	}
	own, err := netnsID()
	if err != nil {
		t.Fatal(err)
	}
	var inner string
	err = Do(func() error {
		var err error
		if inner, err = netnsID(); err != nil {
			return err
		}
		if up, err := loUp(); err != nil || !up {
			return fmt.Errorf("lo not up (err %v)", err)
		}
		return pingPong("127.0.0.5")
	})
	if err != nil {
		t.Fatal(err)
	}
	if inner == own {
		t.Fatalf("fn ran in the caller's namespace %s", own)
	}
	if after, _ := netnsID(); after != own {
		t.Fatalf("caller's thread moved to %s", after)
	}
}

func TestDoError(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("Do needs root")
	}
	want := errors.New("boom")
	if err := Do(func() error { return want }); err != want {
		t.Fatalf("Do returned %v, want fn's error", err)
	}
}

// TestChildDiesWithParent kills a process that started a child with Command
// and expects the child (Pdeathsig SIGKILL) to be gone soon after.
func TestChildDiesWithParent(t *testing.T) {
	if m := Mode(); strings.HasPrefix(m, "unavailable") {
		t.Skip(m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	middle := exec.CommandContext(ctx, "/proc/self/exe", "-test.run=^$")
	middle.Env = append(os.Environ(), roleEnv+"=middle")
	out, err := middle.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := middle.Start(); err != nil {
		t.Fatal(err)
	}
	defer middle.Wait()
	defer middle.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("no pid from the child: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("child printed %q", line)
	}
	middle.Process.Kill()
	middle.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			unix.Kill(pid, unix.SIGKILL)
			t.Fatalf("child %d outlived its parent", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid exists and is not a zombie waiting to be reaped
// by whoever inherited it.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}
