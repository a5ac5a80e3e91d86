//go:build tools

// Package tools records the cert-manager commands build.sh compiles, so `go mod tidy`
// keeps them in the module graph.
package tools

import (
	_ "github.com/cert-manager/cert-manager/cmd/cainjector"
	_ "github.com/cert-manager/cert-manager/cmd/controller"
	_ "github.com/cert-manager/cert-manager/cmd/webhook"
)
