// Package deploy holds the tests of Herald's deployment files: the
// container image (image/, built by make image), the Helm chart (helm/herald)
// and the systemd unit (systemd/). It is a module of its own, so that the
// Kubernetes API types its tests decode the chart into stay out of Herald's
// own dependencies; make test runs it.
package deploy
