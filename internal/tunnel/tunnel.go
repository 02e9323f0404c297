// Package tunnel owns the copying of bytes between a client and its
// destination once a tunnel is allowed: both directions, half-close
// propagated, closed when idle, counted. Between two *net.TCPConn the kernel
// moves the bytes (io.Copy → TCPConn.ReadFrom → splice on Linux), so no
// user-space buffer is held per direction.
package tunnel

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// ErrIdle is returned when neither direction moved a byte for the idle timeout.
var ErrIdle = errors.New("tunnel idle")

// halfCloser is a connection whose write side can be shut down on its own.
type halfCloser interface {
	CloseWrite() error
}

// Counter receives byte counts as they are known (at the end of each copy
// chunk): upload is client → destination.
type Counter interface {
	Add(upload, download int64)
}

// Result says how a tunnel ended.
type Result struct {
	Upload   int64 // client → destination
	Download int64 // destination → client
	Err      error // nil for a clean close by both sides; ErrIdle; or the first I/O error
}

// direction is one half of a tunnel.
type direction struct {
	dst, src  net.Conn
	upload    bool
	n         atomic.Int64
	idleSince atomic.Int64 // unix nanos; 0 while active
	done      atomic.Bool
}

// Pipe copies client ↔ server until both directions are finished, one fails,
// or both have been idle for idle (0 = no idle timeout). It closes both
// connections before returning. One direction runs on a new goroutine, the
// other on the caller's.
func Pipe(client, server net.Conn, idle time.Duration, c Counter) Result {
	up := &direction{dst: server, src: client, upload: true}
	down := &direction{dst: client, src: server}
	errc := make(chan error, 1)
	go func() { errc <- copyUpload(up, down, idle, c) }()
	errDown := copyDownload(down, up, idle, c)
	var errUp error
	if errDown != nil {
		// Unblock the other direction at once.
		client.Close()
		server.Close()
		errUp = <-errc
	} else {
		errUp = <-errc
		client.Close()
		server.Close()
	}
	res := Result{Upload: up.n.Load(), Download: down.n.Load()}
	switch {
	case errors.Is(errUp, ErrIdle) || errors.Is(errDown, ErrIdle):
		res.Err = ErrIdle
	case errDown != nil && !isClosed(errDown):
		res.Err = errDown
	case errUp != nil && !isClosed(errUp):
		res.Err = errUp
	}
	return res
}

// Named functions so that stack dumps say which way a tunnel is stuck.
func copyUpload(d, other *direction, idle time.Duration, c Counter) error {
	return d.run(other, idle, c)
}

func copyDownload(d, other *direction, idle time.Duration, c Counter) error {
	return d.run(other, idle, c)
}

func (d *direction) run(other *direction, idle time.Duration, c Counter) error {
	defer d.done.Store(true)
	for {
		if idle > 0 {
			d.src.SetReadDeadline(time.Now().Add(idle))
		}
		// With *net.TCPConn on both sides this is splice(2): the bytes never
		// enter user space.
		k, err := io.Copy(d.dst, d.src)
		if k > 0 {
			d.n.Add(k)
			d.idleSince.Store(0)
			if c != nil {
				if d.upload {
					c.Add(k, 0)
				} else {
					c.Add(0, k)
				}
			}
		}
		if err == nil {
			// EOF from src: pass the half-close on, and stop this direction.
			if hc, ok := d.dst.(halfCloser); ok {
				hc.CloseWrite()
			} else {
				d.dst.Close()
			}
			d.idleSince.Store(time.Now().UnixNano())
			return nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) || idle <= 0 {
			return err
		}
		// Deadline: idle only if neither direction moved a byte.
		now := time.Now().UnixNano()
		if k == 0 && d.idleSince.Load() == 0 {
			d.idleSince.Store(now)
		}
		mine, theirs := d.idleSince.Load(), other.idleSince.Load()
		if mine != 0 && (theirs != 0 || other.done.Load()) &&
			now-mine >= int64(idle)/2 && now-max(theirs, 0) >= int64(idle)/2 {
			return ErrIdle
		}
	}
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)
}
