// Command paceline is the cluster agent and its command-line client.
package main

import (
	"os"

	"github.com/paceline/paceline/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }
