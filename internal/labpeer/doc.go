// Package labpeer holds the real programs the rstscope lab runs to reproduce
// each kind of TCP reset on real sockets:
//
//   - Backend: a small HTTP/1.1 server ("hello from backend\n") with an
//     nginx-like keepalive_timeout, plus modes that misbehave on purpose
//     (unread data at close, SO_LINGER 0, data after close, a listener that
//     never accepts, ...). See Mode.
//   - Proxy: a reverse proxy to one upstream that behaves like nginx with
//     `upstream { keepalive N; }` and `proxy_http_version 1.1`: a pool of idle
//     upstream connections, 502 Bad Gateway with nginx's error-log lines when
//     the upstream is down or breaks the connection.
//   - Pool: an in-process HTTP/1.1 client with a connection pool that behaves
//     like okhttp: it does not notice the server's FIN on an idle pooled
//     connection, so a request on a stale connection fails with okhttp's
//     "unexpected end of stream" or "Connection reset".
//
// The peers are written on raw net.Conn (net/http is used only to parse
// messages) so that every close, linger and unread byte is under control:
// net/http's server drains request bodies and its client notices idle
// closes, which would hide the very resets the lab wants to show.
//
// RunPeer runs a Backend or Proxy as a process (the hidden `rstscope
// lab-peer` command): it prints "ready ADDR" once listening, logs nginx-like
// lines to stderr and exits when its context ends or stdin closes.
//
// Everything here is meant for loopback addresses (127.0.0.0/8, ::1) inside
// the lab's network namespace.
package labpeer
