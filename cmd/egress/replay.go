package main

import (
	"fmt"
	"io"
)

func cmdReplay(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "egress replay: not built yet")
	return 2
}
