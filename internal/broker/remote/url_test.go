package remote

import "testing"

func TestRedactURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"},
		{"redis://:secret@host:6379/0", "redis://:xxxxx@host:6379/0"},
		{"redis://user:secret@host:6379/0", "redis://user:xxxxx@host:6379/0"},
		{"rediss://user@host:6379", "rediss://xxxxx@host:6379"},
		{"nats://token@host:4222", "nats://xxxxx@host:4222"},
		{"nats://us er:sec ret@host:4222", "xxxxx@host:4222"}, // not a URL to Go
	} {
		if got := RedactURL(c.in); got != c.want {
			t.Errorf("RedactURL(%q) = %q; want %q", c.in, got, c.want)
		}
	}
}

func TestRedactURLs(t *testing.T) {
	in := "nats://a:one@h1:4222, nats://h2:4222,nats://tok@h3:4222"
	want := "nats://a:xxxxx@h1:4222,nats://h2:4222,nats://xxxxx@h3:4222"
	if got := RedactURLs(in); got != want {
		t.Errorf("RedactURLs(%q) = %q; want %q", in, got, want)
	}
}
