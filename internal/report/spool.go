package report

import (
	"bytes"
	"io"
	"os"
)

// Spool holds output lines that must wait (conn rows follow the incidents in
// --json) without holding them all in memory: past a limit it moves them to
// a temporary file, removed by Close.
type Spool struct {
	Limit int // bytes kept in memory; default 1 MiB
	buf   bytes.Buffer
	file  *os.File
	err   error
}

func (s *Spool) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if s.file == nil {
		limit := s.Limit
		if limit == 0 {
			limit = 1 << 20
		}
		if s.buf.Len()+len(p) <= limit {
			return s.buf.Write(p)
		}
		f, err := os.CreateTemp("", "rstscope-spool-*")
		if err != nil {
			s.err = err
			return 0, err
		}
		os.Remove(f.Name()) // unlinked at once: nothing is left behind, even on a crash
		s.file = f
		if _, err := s.buf.WriteTo(f); err != nil {
			s.err = err
			return 0, err
		}
	}
	n, err := s.file.Write(p)
	if err != nil {
		s.err = err
	}
	return n, err
}

// WriteTo copies everything spooled to w.
func (s *Spool) WriteTo(w io.Writer) (int64, error) {
	if s.err != nil {
		return 0, s.err
	}
	if s.file == nil {
		return s.buf.WriteTo(w)
	}
	if _, err := s.file.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	return io.Copy(w, s.file)
}

// Close releases the temporary file.
func (s *Spool) Close() error {
	if s.file != nil {
		return s.file.Close()
	}
	return nil
}
