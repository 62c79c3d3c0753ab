// etcd is the real etcd server, built from the etcd server module that the pinned Kubernetes
// release tested against. The upstream binary lives in a module with replace directives, so it
// cannot be required; its entry point, etcdmain, can.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
