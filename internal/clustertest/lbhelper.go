package clustertest

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
)

// httpHelper is the "http" helper role: an HTTP server answering the node
// name on the address CT_HTTP gives this node ("n1=ADDR,n2=ADDR,...").
func httpHelper() {
	node := os.Getenv("PACELINE_NODE")
	var addr string
	for _, kv := range strings.Split(os.Getenv("CT_HTTP"), ",") {
		if n, a, ok := strings.Cut(kv, "="); ok && n == node {
			addr = a
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, node) }))
	os.Exit(1)
}
