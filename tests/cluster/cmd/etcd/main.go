// Command etcd is the upstream etcd server entry point, built from the same
// module graph as kube-apiserver so its version matches what k8s.io/kubernetes tests with.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
