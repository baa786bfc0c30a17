package lab

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the processes run inside lab hosts:
//
//	lab.test pl-helper echo ADDR             TCP echo server
//	lab.test pl-helper spawn ADDR PIDFILE    start a child (sleep), write its pid, then echo
//	lab.test pl-helper dial ADDR TIMEOUT     send "ping", expect it echoed; exit 0 or 1
//	lab.test pl-helper udpsink ADDR          print every datagram received
//	lab.test pl-helper udpsend ADDR MSG      send one datagram
//	lab.test pl-helper sleep                 block forever
//	lab.test pl-helper cli ARGS...           CLI(ARGS) with an agent that runs echo on every host
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "pl-helper" {
		// syscall.Exit, not os.Exit: under -race, os.Exit(0) sleeps 1 s
		// (GORACE atexit_sleep_ms) and every probe would pay for it.
		syscall.Exit(helper(os.Args[2], os.Args[3:]))
	}
	os.Exit(m.Run())
}

func helper(mode string, args []string) int {
	switch mode {
	case "echo":
		return echo(args[0])
	case "spawn":
		self, _ := os.Executable()
		c := exec.Command(self, "pl-helper", "sleep")
		if err := c.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := os.WriteFile(args[1], []byte(strconv.Itoa(c.Process.Pid)), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return echo(args[0])
	case "dial":
		d, _ := time.ParseDuration(args[1])
		conn, err := net.DialTimeout("tcp", args[0], d)
		if err != nil {
			fmt.Println(err)
			return 1
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(d))
		if _, err := conn.Write([]byte("ping\n")); err != nil {
			fmt.Println(err)
			return 1
		}
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil || line != "ping\n" {
			fmt.Println("bad echo", line, err)
			return 1
		}
		fmt.Println("ok")
		return 0
	case "udpsink":
		pc, err := net.ListenPacket("udp", args[0])
		if err != nil {
			fmt.Println(err)
			return 1
		}
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return 1
			}
			fmt.Printf("got %s from %s\n", buf[:n], from)
		}
	case "udpsend":
		conn, err := net.Dial("udp", args[0])
		if err != nil {
			fmt.Println(err)
			return 1
		}
		_, err = conn.Write([]byte(args[1]))
		if err != nil {
			fmt.Println(err)
			return 1
		}
		return 0
	case "cli":
		self, _ := os.Executable()
		agent := func(l *Lab, h *Host) error {
			_, err := l.Start(h, "agent", []string{self, "pl-helper", "echo", fmt.Sprintf("%s:%d", h.Addr, echoPort)}, []string{"PL_ROLE=agent"})
			return err
		}
		return CLI(context.Background(), args, os.Stdout, os.Stderr, agent)
	case "sleep":
		c := make(chan os.Signal, 1)
		signal.Notify(c, os.Interrupt)
		<-c
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
	return 2
}

func echo(addr string) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println("listening on", addr)
	for {
		c, err := ln.Accept()
		if err != nil {
			return 1
		}
		go func() {
			defer c.Close()
			// Not io.Copy(c, c): its splice path holds data back for ~1 s.
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if _, err := io.WriteString(c, line); err != nil {
					return
				}
			}
		}()
	}
}
