package remote

import (
	"net/url"
	"strings"
)

// RedactURL returns the server URL u for messages, with its password
// hidden, and a user given without a password too: it may be a token
// (nats://token@host).
func RedactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		// Not a URL to Go, but what comes before an @ may still be secret.
		if at := strings.LastIndex(u, "@"); at >= 0 {
			return "xxxxx" + u[at:]
		}
		return u
	}
	if p.User == nil {
		return u
	}
	if _, ok := p.User.Password(); !ok {
		p.User = url.User("xxxxx")
		return p.String()
	}
	return p.Redacted()
}

// RedactURLs is RedactURL for a comma-separated list of URLs, as a NATS
// client takes the servers of a cluster.
func RedactURLs(list string) string {
	urls := strings.Split(list, ",")
	for i, u := range urls {
		urls[i] = RedactURL(strings.TrimSpace(u))
	}
	return strings.Join(urls, ",")
}
