//go:build race

package main

// raceEnabled is set when the tests run with the race detector: the short
// soak then builds herald with it too.
const raceEnabled = true
