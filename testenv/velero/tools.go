//go:build tools

// The binaries this module exists to build; listed so that `go mod tidy` keeps what they need.
package tools

import (
	_ "github.com/vmware-tanzu/velero-plugin-for-aws/velero-plugin-for-aws"
	_ "github.com/vmware-tanzu/velero/cmd/velero"
)
