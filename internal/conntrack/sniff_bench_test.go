package conntrack

import "testing"

// BenchmarkSniffHTTP: the HTTP sniffer alone on a request, a response whose
// headers the snaplen cut, a whole response, and a non-HTTP segment.
func BenchmarkSniffHTTP(b *testing.B) {
	for _, bc := range []struct{ name, payload string }{
		{"get", "GET / HTTP/1.1\r\nHost: 127.0.0.5:8088\r\n\r\n"},
		{"response-cut", "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 25 Nov 2026 04:1"},
		{"response", "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 25 Nov 2026 04:10:58 GMT\r\nContent-Type: text/plain\r\nContent-Length: 6\r\nConnection: keep-alive\r\n\r\nhello\n"},
		{"body", "\x17\x03\x03\x00\x45binarybinarybinarybinary"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var c Conn
			var st storage
			p := []byte(bc.payload)
			for i := 0; b.Loop(); i++ {
				c.sniffHTTP(Dir(i&1), p, uint64(i), int64(i), 0, &st)
			}
		})
	}
}
