//go:build !unix

package pcapio

import "os"

var pageSize int64 = 4096

func mapFile(*os.File, int64) ([]byte, error) { return nil, errNotMappable }
func unmapFile([]byte)                        {}
func dontNeed([]byte)                         {}
