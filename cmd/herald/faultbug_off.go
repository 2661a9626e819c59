//go:build !faultbug

package main

// faulty returns b. Only a deliberately broken build (-tags faultbug, see
// faultbug.go), made by the fault suite, replaces it.
func faulty(b backend) backend { return b }
