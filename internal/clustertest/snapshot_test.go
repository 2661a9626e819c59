package clustertest

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gosse "github.com/tmaxmax/go-sse"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/broker/jetstream/jstest"
	"github.com/heraldhq/herald/internal/broker/redis/redistest"
)

func TestSnapshotSeamJetStream(t *testing.T) {
	srv := jstest.Start(t)
	snapshotSeam(t, "--broker", "nats", "--nats-url", srv.URL())
}

func TestSnapshotSeamRedis(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	snapshotSeam(t, "--broker", "redis", "--redis-url", srv.URL())
}

// snapshotSeam publishes rounds to several topics through one node while
// a subscriber takes a snapshot on another: it must see each topic's state
// as of one position and then every later event of it, once, with ids that
// only increase.
func snapshotSeam(t *testing.T, args ...string) {
	pub := startNode(t, "publisher", args...)
	sub := startNode(t, "subscriber", args...)
	const rooms, rounds = 6, 80
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	started := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for r := 1; r <= rounds; r++ {
			for i := range rooms {
				room := fmt.Sprintf("s%d", i)
				payload, err := anypb.New(&chatv1.ChatMessage{Room: room, Text: strconv.Itoa(r)})
				if err == nil {
					_, err = pub.client.Publish(ctx, &heraldv1.PublishRequest{Topic: "chat.rooms." + room, Payload: payload})
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
			if r == rounds/4 {
				close(started)
			}
		}
	})
	<-started
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sub.url+"/v1/events?topic=chat.rooms.>&snapshot=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	last := map[string]int{}
	var prev uint64
	synced := false
	done := func() bool {
		if !synced || len(last) < rooms {
			return false
		}
		for _, r := range last {
			if r < rounds {
				return false
			}
		}
		return true
	}
	for ev, err := range gosse.Read(resp.Body, nil) {
		if err != nil {
			t.Fatal(err)
		}
		seq, perr := strconv.ParseUint(ev.LastEventID[strings.LastIndexByte(ev.LastEventID, '-')+1:], 10, 64)
		// herald.synced carries the snapshot's position, which may be the
		// id of its last event; every other id is above the one before.
		if perr != nil || seq < prev || seq == prev && ev.Type != "herald.synced" {
			t.Fatalf("id %q (type %q) after seq %d: ids must increase", ev.LastEventID, ev.Type, prev)
		}
		prev = seq
		if ev.Type == "herald.synced" {
			if synced {
				t.Fatal("a second herald.synced")
			}
			synced = true
			continue
		}
		var m chatv1.ChatMessage
		if err := protojson.Unmarshal([]byte(ev.Data), &m); err != nil {
			t.Fatalf("%s: %v", ev.Data, err)
		}
		r, _ := strconv.Atoi(m.GetText())
		if was, ok := last[m.GetRoom()]; ok && r != was+1 {
			t.Fatalf("room %s: round %d after %d (synced %v): a gap or a duplicate at the seam", m.GetRoom(), r, was, synced)
		} else if !ok && synced {
			t.Fatalf("room %s first seen live (round %d): missing from the snapshot", m.GetRoom(), r)
		}
		last[m.GetRoom()] = r
		if done() {
			break
		}
	}
	wg.Wait()
	if !done() {
		t.Fatalf("the stream ended at %v (synced %v)", last, synced)
	}
}
