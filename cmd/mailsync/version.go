package main

import "fmt"

// VersionCmd prints the version.
type VersionCmd struct{}

func (c *VersionCmd) Run(g *Globals) error {
	_, err := fmt.Fprintf(g.stdout, "mailsync %s\n", version)
	return err
}
