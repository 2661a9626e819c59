// Package javaexample holds the test of the Java publisher in this
// directory: it builds the publisher with build.sh, runs it against an
// in-process Herald, and checks with an SSE client that every event arrived
// with the right JSON. The test is skipped, saying what is missing, when the
// Java toolchain is not installed, and fails instead when
// HERALD_REQUIRE_JAVA=1 (as in CI).
package javaexample
