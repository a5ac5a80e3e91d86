// Command etcd is upstream etcd's server at the version k8s.io/kubernetes pins,
// built from the same module graph so no second dependency set is needed.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
